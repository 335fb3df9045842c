// Idle timeout for pairs the kernel carries: user space sees none of their bytes, so activity is
// read from TCP_INFO (bytes received by either socket). Stops by itself once a socket is closed.
import type { Socket } from 'node:net';
import { socketFd, tcpInfo } from '../bpf/socket-syscalls.js';

/** Polls at most every 5 s and at least every 50 ms; returns a function that stops watching. */
export function watchKernelIdle(sockets: readonly Socket[], idleTimeoutMs: number, onIdle: (quietMs: number) => void): () => void {
  if (idleTimeoutMs <= 0) return () => undefined;
  const every = Math.max(50, Math.min(5000, Math.floor(idleTimeoutMs / 4)));
  let last = -1n;
  let lastChange = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const stop = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
  };
  const poll = () => {
    timer = undefined;
    let seen = 0n;
    try {
      for (const s of sockets) {
        if (s.destroyed) return; // the connection is ending; nothing to watch
        seen += tcpInfo(socketFd(s)).bytesReceived;
      }
    } catch {
      return; // the fd went away between the check and the read: the connection is ending
    }
    const now = Date.now();
    if (seen !== last) {
      last = seen;
      lastChange = now;
    } else if (now - lastChange >= idleTimeoutMs) {
      onIdle(now - lastChange);
      return;
    }
    timer = setTimeout(poll, every);
  };
  timer = setTimeout(poll, every);
  return stop;
}
