// The messages between the agent and its splice keeper (Node child_process IPC, JSON; each
// socket travels as a raw TCP handle, i.e. SCM_RIGHTS, one per message). Pure types and guards:
// both sides import them, neither imports the other.

/** What the keeper needs to run the post-handover phase of one direction. */
export interface KeeperDirection {
  /** Bytes of the source socket's stream that reached user space in the agent. */
  consumed: number;
  /** Bytes the agent wrote into the destination socket (all in its kernel send queue at handover). */
  queued: number;
  /** Bytes the agent copied before the handover (reported back for the connection's record). */
  userBytes: number;
}

export interface KeeperPairMeta {
  connId: string;
  listener: string;
  /** SO_COOKIE of each socket, decimal (the SKB maps' keys). */
  downCookie: string;
  upCookie: string;
  downstreamToUpstream: KeeperDirection;
  upstreamToDownstream: KeeperDirection;
  drainTimeoutMs: number;
  /** TcpProxy idle_timeout in ms (0: none). */
  idleTimeoutMs: number;
}

export type AgentToKeeper =
  /** One socket of a pair (the handle rides with it); the first of the two carries the meta. */
  | { type: 'socket'; connId: string; role: 'down' | 'up'; meta?: KeeperPairMeta }
  /** The agent gave up on a pair it had sent (it reset its side): reset both sockets. */
  | { type: 'reset'; connId: string; reason: string }
  /** The agent keeps a pair it started to send (a socket did not go, or no answer in time): close what arrived, touch nothing. */
  | { type: 'forget'; connId: string };

export type KeeperEnd = 'fin' | 'reset' | 'error' | 'idle';

export interface KeeperEndReport {
  /** kernel: ended normally; broken: bytes reached the keeper (a redirect failed). */
  mode: 'kernel' | 'broken';
  end: KeeperEnd;
  error?: string;
  /** Bytes the kernel redirected per direction, decimal. */
  kernelBytes: { downstreamToUpstream: string; upstreamToDownstream: string };
}

export type KeeperToAgent =
  | { type: 'ready'; pid: number }
  /** Both sockets arrived and the keeper watches them: the agent closes its copies. */
  | { type: 'adopted'; connId: string }
  /** The keeper could not take the pair (a socket did not arrive); the agent keeps it. */
  | { type: 'refused'; connId: string; reason: string }
  | { type: 'ended'; connId: string; report: KeeperEndReport };

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

export function isAgentToKeeper(v: unknown): v is AgentToKeeper {
  if (!isObj(v) || typeof v['connId'] !== 'string') return false;
  if (v['type'] === 'socket') return v['role'] === 'down' || v['role'] === 'up';
  if (v['type'] === 'forget') return true;
  return v['type'] === 'reset' && typeof v['reason'] === 'string';
}

export function isKeeperToAgent(v: unknown): v is KeeperToAgent {
  if (!isObj(v)) return false;
  switch (v['type']) {
    case 'ready':
      return typeof v['pid'] === 'number';
    case 'adopted':
      return typeof v['connId'] === 'string';
    case 'refused':
      return typeof v['connId'] === 'string' && typeof v['reason'] === 'string';
    case 'ended':
      return typeof v['connId'] === 'string' && isObj(v['report']);
    default:
      return false;
  }
}
