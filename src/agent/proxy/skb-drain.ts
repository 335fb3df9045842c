// The end of an SKB-spliced stream, shared by the agent (splice-skb.ts) and the splice keeper
// (skb-keeper-pair.ts): a FIN must not overtake the bytes the kernel redirected, which reach the
// peer socket asynchronously, so the peer's write side is shut only once its send queue has
// taken them all (docs/bpf.md, the pairing contract, step 6).
import { PairState } from '../bpf/layout-skb.js';
import { bytesWritten, tcpInfo } from '../bpf/socket-syscalls.js';

/** Bytes the kernel redirected out of src: all it received, less the FIN's sequence number and what user space consumed. */
export function redirectedBytes(srcFd: number, consumed: number): bigint {
  const n = tcpInfo(srcFd).bytesReceived - 1n - BigInt(consumed);
  return n > 0n ? n : 0n;
}

/** Resolves once dst has taken `target` payload bytes in all; rejects after timeoutMs, naming `what`. */
export function waitSendQueueTook(dstFd: number, target: bigint, timeoutMs: number, what: string): Promise<void> {
  const t0 = Date.now();
  return new Promise<void>((res, rej) => {
    const check = () => {
      let written: bigint;
      try {
        written = bytesWritten(tcpInfo(dstFd));
      } catch (e) {
        return rej(e as Error);
      }
      if (written >= target) return res();
      if (Date.now() - t0 > timeoutMs) return rej(new Error(`${what}: ${target - written} bytes did not reach the peer socket within ${timeoutMs} ms`));
      setTimeout(check, 1);
    };
    check();
  });
}

/** Why bytes reached user space after the handover, from the pair's state in skb_pairs. */
export function afterHandoverError(direction: string, state: number | undefined): string {
  return state === PairState.BROKEN
    ? `${direction}: the redirect to the peer socket failed (peer gone)`
    : `${direction}: bytes reached user space after the handover (pair state ${state ?? 'gone'})`;
}
