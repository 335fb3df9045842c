// Byte pipes between a TCP port and a Unix socket. A network namespace has its own loopback, but
// a Unix socket is a file and reaches across namespaces: the demo uses one pipe on each side to
// let the agent in the middlebox namespace reach the control plane's xDS port on this host, and
// to show the agent's metrics port on this host's loopback.
import { rmSync } from 'node:fs';
import net from 'node:net';

export type BridgeEnd = { tcp: { host: string; port: number } } | { unix: string };

export interface Bridge {
  /** The TCP port listened on (when listening on TCP; useful with port 0). */
  port: number | undefined;
  close(): Promise<void>;
}

const describe = (e: BridgeEnd) => ('tcp' in e ? `${e.tcp.host}:${e.tcp.port}` : e.unix);

/** Listens on `from`; every connection is piped to a new connection to `to`. */
export async function bridge(from: BridgeEnd, to: BridgeEnd): Promise<Bridge> {
  const open = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (inbound) => {
    const outbound = 'tcp' in to ? net.connect({ host: to.tcp.host, port: to.tcp.port, allowHalfOpen: true }) : net.connect({ path: to.unix, allowHalfOpen: true });
    open.add(inbound).add(outbound);
    const drop = () => {
      inbound.destroy();
      outbound.destroy();
      open.delete(inbound);
      open.delete(outbound);
    };
    inbound.on('error', drop).on('close', drop);
    outbound.on('error', drop).on('close', drop);
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  if ('unix' in from) rmSync(from.unix, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(new Error(`cannot listen on ${describe(from)} (to reach ${describe(to)}): ${e.code === 'EADDRINUSE' ? 'the address is in use; stop what holds it or choose another port' : e.message}`)),
    );
    if ('tcp' in from) server.listen(from.tcp.port, from.tcp.host, () => resolve());
    else server.listen(from.unix, () => resolve());
  });
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : undefined,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}
