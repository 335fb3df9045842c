// A real xDS client in its own process (grpc-js-xds reads its bootstrap process-wide): resolves
// `xds:///<target>` through the xDS server named in GRPC_XDS_BOOTSTRAP_CONFIG and calls
// /test.Echo/Who every INTERVAL_MS, printing one JSON line per call:
//   {"ok":true,"backend":"<name the backend returned>"} or {"ok":false,"code":14,"details":"..."}
import * as grpc from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';

const target = process.argv[2];
if (!target) {
  process.stderr.write('usage: xds-grpc-child.ts xds:///<name>\n');
  process.exit(2);
}
if (!process.env['GRPC_XDS_BOOTSTRAP_CONFIG'] && !process.env['GRPC_XDS_BOOTSTRAP']) {
  process.stderr.write('set GRPC_XDS_BOOTSTRAP_CONFIG (or GRPC_XDS_BOOTSTRAP) to an xDS bootstrap\n');
  process.exit(2);
}
grpcXds.register();
const intervalMs = Number(process.env['INTERVAL_MS'] ?? 100);
const client = new grpc.Client(target, grpc.credentials.createInsecure());

function call(): void {
  client.makeUnaryRequest(
    '/test.Echo/Who',
    (b: Buffer) => b,
    (b: Buffer) => b,
    Buffer.alloc(0),
    { deadline: Date.now() + 2000 },
    (err: grpc.ServiceError | null, res?: Buffer) => {
      const line = err ? { ok: false, code: err.code, details: err.details } : { ok: true, backend: (res as Buffer).toString('utf8') };
      process.stdout.write(`${JSON.stringify(line)}\n`);
      setTimeout(call, intervalMs);
    },
  );
}

call();
process.on('SIGTERM', () => {
  client.close();
  process.exit(0);
});
