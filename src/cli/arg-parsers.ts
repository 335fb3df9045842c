// Option value parsers shared by the subcommands. They throw commander's InvalidArgumentError, so
// a bad value prints one line naming the option and the reason (no stack trace) and exits 1.
import { InvalidArgumentError } from 'commander';

export function parsePort(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) throw new InvalidArgumentError(`"${value}" is not a port (0-65535)`);
  return n;
}

export function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1) throw new InvalidArgumentError(`"${value}" is not a positive integer`);
  return n;
}

export function parseHostPort(value: string): string {
  if (!/^(\[[0-9A-Fa-f:.]+\]|[^\s:/]+):\d{1,5}$/.test(value)) throw new InvalidArgumentError(`"${value}" is not HOST:PORT (e.g. 10.0.0.1:18000 or [fd00::1]:18000)`);
  return value;
}

export function parseOneOf<T extends string>(values: readonly T[]) {
  return (value: string): T => {
    if (!(values as readonly string[]).includes(value)) throw new InvalidArgumentError(`"${value}" is not one of ${values.join(', ')}`);
    return value as T;
  };
}
