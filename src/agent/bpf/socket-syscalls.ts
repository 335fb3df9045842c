// Socket syscalls Node does not expose, called through libc: the socket cookie (the SKB splice
// maps' key), TCP_INFO, queue sizes (FIONREAD, SIOCOUTQ), and setsockopt. Node gives a
// connected socket's fd as socket._handle.fd on Linux.
import type { Socket } from 'node:net';
import { constants } from 'node:os';
import { BpfError } from './errors.js';
import { lastErrno, libc, strerror } from './libbpf.js';

const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SO_COOKIE = 57;
const IPPROTO_TCP = 6;
const TCP_INFO = 11;
const FIONREAD = 0x541b;
const SIOCOUTQ = 0x5411;
const SIOCOUTQNSD = 0x894b;

export const SockOpt = { SOL_SOCKET, SO_SNDBUF, SO_RCVBUF, IPPROTO_TCP } as const;

/** The fd behind a connected Node socket. */
export function socketFd(sock: Socket): number {
  const handle = (sock as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new Error(`socket ${sock.remoteAddress ?? '?'}:${sock.remotePort ?? '?'} has no fd (not connected, or already closed)`);
  }
  return fd;
}

function fail(what: string, fd: number): never {
  const errno = lastErrno();
  throw new BpfError({ what: `${what} (fd ${fd})`, errno, reason: strerror(errno), ...(errno === constants.errno.EBADF ? { remedy: 'the socket was closed meanwhile' } : {}) });
}

/** SO_COOKIE: the kernel's unique, never reused 64-bit id of the socket. */
export function socketCookie(fd: number): bigint {
  const buf = Buffer.alloc(8);
  const len = new Uint32Array([8]);
  if (libc().getsockopt(fd, SOL_SOCKET, SO_COOKIE, buf, len) !== 0) fail('getsockopt SO_COOKIE', fd);
  return buf.readBigUInt64LE(0);
}

/** The TCP_INFO fields we use (offsets from struct tcp_info, uapi/linux/tcp.h). */
export interface TcpInfo {
  state: number;
  rttUs: number;
  sndCwnd: number;
  bytesAcked: bigint;
  bytesReceived: bigint;
  notsentBytes: number;
  bytesSent: bigint;
  bytesRetrans: bigint;
  totalRetrans: number;
}

export const TCP_INFO_OFFSETS = {
  tcpi_state: 0,
  tcpi_rtt: 68,
  tcpi_snd_cwnd: 80,
  tcpi_total_retrans: 100,
  tcpi_bytes_acked: 120,
  tcpi_bytes_received: 128,
  tcpi_notsent_bytes: 144,
  tcpi_bytes_sent: 200,
  tcpi_bytes_retrans: 208,
} as const;
const TCP_INFO_LEN = 232;

export function tcpInfo(fd: number): TcpInfo {
  const buf = Buffer.alloc(TCP_INFO_LEN);
  const len = new Uint32Array([TCP_INFO_LEN]);
  if (libc().getsockopt(fd, IPPROTO_TCP, TCP_INFO, buf, len) !== 0) fail('getsockopt TCP_INFO', fd);
  if (len[0]! < TCP_INFO_OFFSETS.tcpi_bytes_retrans + 8) throw new Error(`TCP_INFO of fd ${fd} is ${len[0]} bytes; this kernel is too old (need Linux 4.19+)`);
  const o = TCP_INFO_OFFSETS;
  return {
    state: buf.readUInt8(o.tcpi_state),
    rttUs: buf.readUInt32LE(o.tcpi_rtt),
    sndCwnd: buf.readUInt32LE(o.tcpi_snd_cwnd),
    totalRetrans: buf.readUInt32LE(o.tcpi_total_retrans),
    bytesAcked: buf.readBigUInt64LE(o.tcpi_bytes_acked),
    bytesReceived: buf.readBigUInt64LE(o.tcpi_bytes_received),
    notsentBytes: buf.readUInt32LE(o.tcpi_notsent_bytes),
    bytesSent: buf.readBigUInt64LE(o.tcpi_bytes_sent),
    bytesRetrans: buf.readBigUInt64LE(o.tcpi_bytes_retrans),
  };
}

/**
 * Payload bytes ever written into the socket's send queue: sent once (retransmissions not
 * counted twice) plus not yet sent. Exact for data; SYN and FIN are not counted.
 */
export function bytesWritten(info: TcpInfo): bigint {
  return info.bytesSent - info.bytesRetrans + BigInt(info.notsentBytes);
}

function ioctlInt(fd: number, req: number, name: string): number {
  const buf = Buffer.alloc(4);
  if (libc().ioctl(fd, req, buf) !== 0) fail(`ioctl ${name}`, fd);
  return buf.readInt32LE(0);
}

/** Bytes waiting to be read (FIONREAD). */
export function inq(fd: number): number {
  return ioctlInt(fd, FIONREAD, 'FIONREAD');
}

/** Bytes in the send queue, unacknowledged or unsent (SIOCOUTQ). */
export function outq(fd: number): number {
  return ioctlInt(fd, SIOCOUTQ, 'SIOCOUTQ');
}

/** Bytes in the send queue not yet sent (SIOCOUTQNSD). */
export function outqNotSent(fd: number): number {
  return ioctlInt(fd, SIOCOUTQNSD, 'SIOCOUTQNSD');
}

const F_DUPFD_CLOEXEC = 1030;

/**
 * A second fd for the same socket (close it with fs.closeSync). Close-on-exec, like every fd
 * Node opens: a process the agent spawns (the splice keeper) must not inherit it, or the
 * socket would stay open in that process after the agent closed it.
 */
export function dupFd(fd: number): number {
  const r = libc().fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (r < 0) fail('fcntl(F_DUPFD_CLOEXEC)', fd);
  return r;
}

const MSG_DONTWAIT = 0x40;

/**
 * One non-blocking recv into buf: the byte count, 0 at end of stream, or undefined when nothing
 * is there yet (EAGAIN). For reading a socket whose Node stream has already ended.
 */
export function recvNonBlocking(fd: number, buf: Buffer): number | undefined {
  const n = Number(libc().recv(fd, buf, buf.length, MSG_DONTWAIT));
  if (n >= 0) return n;
  const errno = lastErrno();
  if (errno === constants.errno.EAGAIN || errno === constants.errno.EWOULDBLOCK) return undefined;
  fail('recv', fd);
}

const MSG_NOSIGNAL = 0x4000;

/** One non-blocking send: bytes taken by the kernel (maybe fewer than asked), 0 when full. */
export function sendNonBlocking(fd: number, buf: Buffer): number {
  const n = Number(libc().send(fd, buf, buf.length, MSG_DONTWAIT | MSG_NOSIGNAL));
  if (n >= 0) return n;
  const errno = lastErrno();
  if (errno === constants.errno.EAGAIN || errno === constants.errno.EWOULDBLOCK) return 0;
  fail('send', fd);
}

export function setSockOptInt(fd: number, level: number, name: number, value: number): void {
  const buf = Buffer.alloc(4);
  buf.writeInt32LE(value);
  if (libc().setsockopt(fd, level, name, buf, 4) !== 0) fail(`setsockopt ${level}/${name}=${value}`, fd);
}

export function getSockOptInt(fd: number, level: number, name: number): number {
  const buf = Buffer.alloc(4);
  const len = new Uint32Array([4]);
  if (libc().getsockopt(fd, level, name, buf, len) !== 0) fail(`getsockopt ${level}/${name}`, fd);
  return buf.readInt32LE(0);
}
