// The `ebpf-xds` command. Each subcommand lives in src/cli/<name>.ts and registers itself here;
// this file only wires them, so parts stay independent (see DESIGN.md, "Parts").
import { Command } from 'commander';
import { registerAgent } from './cli/agent.js';
import { registerConfigCommands } from './cli/config-commands.js';
import { registerControlPlane } from './cli/control-plane.js';
import { registerStart } from './cli/start.js';

const program = new Command('ebpf-xds')
  .description('Envoy-compatible xDS control plane and node agent for eBPF-accelerated L4 middleboxes')
  .showHelpAfterError()
  .enablePositionalOptions();

const registrations: Array<(p: Command) => void> = [registerControlPlane, registerAgent, registerConfigCommands, registerStart];
for (const register of registrations) register(program);

await program.parseAsync(process.argv);
