#!/usr/bin/env node
// Runs the TypeScript CLI through tsx, so `npx tenantgate ...` works from a checkout.
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../src/cli.ts');
await runCli(process.argv.slice(2));
