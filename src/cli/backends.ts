import type { CommandModule } from 'yargs';

export const backendsCommand: CommandModule<object, object> = {
  command: 'backends',
  describe: 'list the training backends (--backend of train-student and evaluate): which load here, and what auto picks',
  handler: async () => {
    const { initBackend, listBackends } = await import('../train/backend.js');
    const list = await listBackends();
    for (const b of list) console.log(`${b.available ? 'yes' : 'no '}  ${b.name.padEnd(10)}  ${b.detail}`);
    const auto = await initBackend('auto');
    console.log(`auto: ${auto.name}`);
  },
};
