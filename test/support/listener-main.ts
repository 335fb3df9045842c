// A TCP listener for steering and drop-rule tests, run inside a namespace: it answers every
// connection with "port <local port>" (the port the client dialled, which sk_lookup steering
// may differ from the one it listens on) and closes. With --pins/--slot it puts its listening
// socket into a pinned steer_socks map, as the agent does for its listeners.
//   --port P (0: any) [--pins DIR --slot N]      prints {"event":"listening","port":P}
import net from 'node:net';
import { join } from 'node:path';
import { BpfMap } from '../../src/agent/bpf/map.js';
import { U32 } from '../../src/agent/bpf/struct-codec.js';

const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};

const server = net.createServer((s) => {
  s.on('error', () => undefined);
  s.end(`port ${s.localPort}`);
});
server.listen({ port: Number(opt('port') ?? 0), host: '::' }, () => {
  const pins = opt('pins');
  if (pins) {
    const socks = BpfMap.openPinned(join(pins, 'steer_socks'));
    const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
    socks.updateSocket(U32.encode({ v: Number(opt('slot') ?? 0) }), fd);
    socks.close();
  }
  process.stdout.write(`${JSON.stringify({ event: 'listening', port: (server.address() as net.AddressInfo).port })}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
