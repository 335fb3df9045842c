// Entry of the splice keeper process (skb-keeper-main.ts): registers tsx's loader relative to
// this file, as bin/ebpf-xds.mjs does, so the keeper starts the same way in a checkout, the
// container image and under tests, whatever the agent's own loader flags were.
import { register } from 'tsx/esm/api';

register();
await import('./skb-keeper-main.ts');
