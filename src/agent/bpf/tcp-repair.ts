// TCP repair mode and the TCP_INFO facts XDP splice pairing needs (uapi/linux/tcp.h). Repair
// mode (CAP_NET_ADMIN) freezes a socket: it sends nothing, its exact sequence numbers and
// timestamp clock can be read, and closing it sends neither FIN nor RST (tcp_close ->
// tcp_disconnect with tp->repair set). That is how the proxy's sockets step out of a spliced
// connection. Syscalls go through libc (koffi); every failure names the socket and the option.
import { constants } from 'node:os';
import { BpfError } from './errors.js';
import { lastErrno, libc, strerror } from './libbpf.js';

const IPPROTO_TCP = 6;
const SOL_SOCKET = 1;
const SO_KEEPALIVE = 9;
const TCP_INFO = 11;
const TCP_REPAIR = 19;
const TCP_REPAIR_QUEUE = 20;
const TCP_QUEUE_SEQ = 21;
const TCP_TIMESTAMP = 24;

const TCP_REPAIR_ON = 1;
/** Leave repair mode without the window probe TCP_REPAIR_OFF (0) would send. */
const TCP_REPAIR_OFF_NO_WP = -1;
const TCP_NO_QUEUE = 0;
const TCP_RECV_QUEUE = 1;
const TCP_SEND_QUEUE = 2;

function fail(what: string, fd: number): never {
  const errno = lastErrno();
  throw new BpfError({
    what: `${what} (socket fd ${fd})`,
    errno,
    reason: strerror(errno),
    ...(errno === constants.errno.EPERM ? { remedy: 'TCP repair mode needs CAP_NET_ADMIN' } : errno === constants.errno.EBADF ? { remedy: 'the socket was closed meanwhile' } : {}),
  });
}

function setInt(fd: number, level: number, name: number, value: number, what: string): void {
  const buf = Buffer.alloc(4);
  buf.writeInt32LE(value);
  if (libc().setsockopt(fd, level, name, buf, 4) !== 0) fail(what, fd);
}

function getU32(fd: number, level: number, name: number, what: string): number {
  const buf = Buffer.alloc(4);
  const len = new Uint32Array([4]);
  if (libc().getsockopt(fd, level, name, buf, len) !== 0) fail(what, fd);
  return buf.readUInt32LE(0);
}

/** Enters (true) or leaves (false, without a window probe) TCP repair mode. */
export function setRepair(fd: number, on: boolean): void {
  setInt(fd, IPPROTO_TCP, TCP_REPAIR, on ? TCP_REPAIR_ON : TCP_REPAIR_OFF_NO_WP, `setsockopt TCP_REPAIR=${on ? 1 : -1}`);
}

/** Next sequence number of a queue, read in repair mode: send = write_seq, recv = rcv_nxt. */
export function queueSeq(fd: number, queue: 'send' | 'recv'): number {
  setInt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, queue === 'send' ? TCP_SEND_QUEUE : TCP_RECV_QUEUE, `setsockopt TCP_REPAIR_QUEUE=${queue}`);
  try {
    return getU32(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, `getsockopt TCP_QUEUE_SEQ (${queue} queue)`);
  } finally {
    setInt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE, 'setsockopt TCP_REPAIR_QUEUE=none');
  }
}

/** The TSval the socket would put in a segment now (its clock plus its per-connection offset). */
export function tcpTimestamp(fd: number): number {
  return getU32(fd, IPPROTO_TCP, TCP_TIMESTAMP, 'getsockopt TCP_TIMESTAMP');
}

export function setKeepAlive(fd: number, on: boolean): void {
  setInt(fd, SOL_SOCKET, SO_KEEPALIVE, on ? 1 : 0, `setsockopt SO_KEEPALIVE=${on ? 1 : 0}`);
}

/** TCP_INFO fields of struct tcp_info that pairing checks. */
export interface TcpLegInfo {
  state: number;
  options: number;
  sndWscale: number;
  rcvWscale: number;
  sndMss: number;
  rcvMss: number;
  unacked: number;
  rttUs: number;
  advmss: number;
  totalRetrans: number;
}

/** Byte offsets in struct tcp_info (stable uapi layout). */
const O = { state: 0, options: 5, wscale: 6, snd_mss: 16, rcv_mss: 20, unacked: 24, rtt: 68, advmss: 84, total_retrans: 100 } as const;

export function tcpLegInfo(fd: number): TcpLegInfo {
  const buf = Buffer.alloc(104);
  const len = new Uint32Array([buf.length]);
  if (libc().getsockopt(fd, IPPROTO_TCP, TCP_INFO, buf, len) !== 0) fail('getsockopt TCP_INFO', fd);
  if (len[0]! < buf.length) throw new Error(`TCP_INFO of fd ${fd} is ${len[0]} bytes, expected at least ${buf.length}`);
  const ws = buf.readUInt8(O.wscale);
  return {
    state: buf.readUInt8(O.state),
    options: buf.readUInt8(O.options),
    // tcpi_snd_wscale:4, tcpi_rcv_wscale:4 share one byte; the first bitfield is the low nibble.
    sndWscale: ws & 0x0f,
    rcvWscale: ws >> 4,
    sndMss: buf.readUInt32LE(O.snd_mss),
    rcvMss: buf.readUInt32LE(O.rcv_mss),
    unacked: buf.readUInt32LE(O.unacked),
    rttUs: buf.readUInt32LE(O.rtt),
    advmss: buf.readUInt32LE(O.advmss),
    totalRetrans: buf.readUInt32LE(O.total_retrans),
  };
}
