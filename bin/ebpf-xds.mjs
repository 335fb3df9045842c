#!/usr/bin/env node
// Entry point for the `ebpf-xds` command: runs the TypeScript CLI through tsx's loader,
// so an installed checkout needs no separate compile step.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli.ts');
