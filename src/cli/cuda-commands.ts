import type { Argv, CommandModule } from 'yargs';
import { checkCuda, cudaSessionProblem, findCudaLibraryDirs, installCudaProvider, ldLibraryPathLine, ortBinDir, ortVersion } from '../precompute/cuda.js';
import { UserError } from '../util/errors.js';

export const cudaCommand: CommandModule = {
  command: 'cuda <action>',
  describe: 'the CUDA execution provider for precompute-logits: check what is missing, or install it offline',
  builder: (y: Argv) => y
    .positional('action', { choices: ['check', 'install'] as const, describe: 'check: list every library --device cuda needs; install: copy the provider libraries into place' })
    .option('from', { type: 'string', describe: 'install: a folder or .tgz holding libonnxruntime_providers_{shared,cuda}.so (e.g. npm pack com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9)' })
    .example('$0 cuda check', 'what is present, what is missing')
    .example('$0 cuda install --from com.github.asus4.onnxruntime.linux-x64-gpu-0.4.9.tgz', 'offline install from an npm tarball'),
  handler: async (a) => {
    if (a.action === 'install') {
      if (!a.from) throw new UserError('kdcache cuda install needs --from <folder or .tgz>');
      const r = await installCudaProvider(String(a.from));
      for (const f of r.installed) console.log(`installed ${f}`);
      console.log(`onnxruntime-node ${ortVersion()}: provider version ${r.versionOk === true ? 'matches' : 'could not be confirmed'}; run 'kdcache cuda check' next`);
      return;
    }
    const items = checkCuda();
    if (items.every((i) => i.ok)) {
      const problem = await cudaSessionProblem();
      items.push({ what: 'a one-node model on cuda:0', ok: !problem, detail: problem ?? 'runs' });
    }
    const w = Math.max(...items.map((i) => i.what.length));
    console.log(`onnxruntime-node ${ortVersion()}, provider folder ${ortBinDir()}`);
    for (const i of items) console.log(`${i.ok ? 'ok     ' : 'MISSING'}  ${i.what.padEnd(w)}  ${i.detail}`);
    const bad = items.filter((i) => !i.ok);
    const missingLibs = bad.flatMap((i) => (i.lib ? [i.lib] : []));
    const dirs = missingLibs.length > 0 ? findCudaLibraryDirs(missingLibs) : [];
    if (dirs.length > 0) console.log(`hint: the missing libraries are in ${dirs.join(', ')}; before starting node: ${ldLibraryPathLine(dirs)}`);
    if (bad.length > 0) throw new UserError(`--device cuda cannot work here: ${bad.length} item(s) missing (listed above), first: ${bad[0].what}`);
    console.log('ok: everything --device cuda needs loads, and a model runs on the GPU');
  },
};
