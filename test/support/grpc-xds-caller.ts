// A gRPC client that resolves its target through xDS (@grpc/grpc-js-xds) and calls a unary method
// every `interval` ms, printing one JSON line per call: {"ok":"<reply>"} or {"error":"..."}.
// Runs as its own process because grpc-js-xds reads its bootstrap once per process
// (GRPC_XDS_BOOTSTRAP_CONFIG). Usage: tsx grpc-xds-caller.ts <xds:///target> <method path> [interval ms]
import * as grpc from '@grpc/grpc-js';
import * as xds from '@grpc/grpc-js-xds';

const [target, method, interval = '100'] = process.argv.slice(2);
if (!target || !method) {
  process.stderr.write('usage: grpc-xds-caller.ts <xds:///target> <method path> [interval ms]\n');
  process.exit(2);
}
xds.register();
const client = new grpc.Client(target, grpc.credentials.createInsecure());
const identity = (b: Buffer) => b;

function once(): void {
  client.makeUnaryRequest(method as string, identity, identity, Buffer.alloc(0), { deadline: Date.now() + 3000 }, (err, res) => {
    process.stdout.write(`${JSON.stringify(err ? { error: `${err.code} ${err.details}` } : { ok: (res as Buffer).toString() })}\n`);
  });
}
setInterval(once, Number(interval));
process.on('SIGTERM', () => {
  client.close();
  process.exit(0);
});
