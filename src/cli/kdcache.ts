#!/usr/bin/env node
import { hideBin } from 'yargs/helpers';
import { runMain } from '../util/errors.js';
import { backendsCommand } from './backends.js';
import { cli } from './common.js';
import { cudaCommand } from './cuda-commands.js';
import { demoCommand } from './demo.js';
import { evaluateCommand } from './evaluate.js';
import { finalizeCommand, inspectCommand, verifyCommand } from './cache-commands.js';

await runMain(async () => {
  await cli('kdcache', hideBin(process.argv))
    .usage('$0 <command> [options]\n\nInspect, verify and finalize kdcache caches; evaluate students.\nThe two main jobs have their own commands: precompute-logits and train-student.')
    .command(verifyCommand)
    .command(finalizeCommand)
    .command(inspectCommand)
    .command(evaluateCommand)
    .command(demoCommand)
    .command(cudaCommand)
    .command(backendsCommand)
    .demandCommand(1, 'give a command: verify, finalize, inspect, evaluate, demo, cuda or backends')
    .help()
    .parseAsync();
});
