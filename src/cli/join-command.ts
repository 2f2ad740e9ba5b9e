/**
 * `pgtide join --config ac.yaml --peer bc.yaml [--peer …]`: adds node C to a
 * live pair or mesh (docs/topologies.md, "Adding a node"). Creates the peer
 * edges' slots (B → C), waits until A has applied B up to them, then runs the
 * first start of the copying edge A → C: its copy snapshot fixes the position
 * from which each peer edge applies (control/join.ts). Returns once the copy
 * is done and the copying edge streams; then start every new edge normally.
 */
import type { Command } from 'commander';
import { Engine } from '../control/engine.js';
import { createLogger } from '../control/logger.js';
import { preparePeer, recordPeerPositions, waitViaCaughtUp, type PreparedPeer } from '../control/join.js';
import type { PgtideConfig } from '../control/config.js';
import { PgtideError } from '../core/errors.js';

export function registerJoinCommand(program: Command, load: (path: string) => PgtideConfig): void {
  program.command('join')
    .description('add a node to a live pair or mesh: copy it from one node (--config) and start the edges from the other nodes (--peer) exactly where that copy ends')
    .requiredOption('-c, --config <file>', 'config of the edge that copies an existing node into the new one (copy on, origins: none)')
    .option('--peer <file>', 'config of an edge from another existing node into the new one (repeat per node)', (value: string, previous: string[]) => [...previous, value], [] as string[])
    .option('--wait <seconds>', 'how long to wait for the copying node to apply each peer up to its new slot', '300')
    .action(async (options: { config: string; peer: string[]; wait: string }) => {
      const via = load(options.config);
      const peers = options.peer.map(load);
      if (!via.copy.enabled) throw new PgtideError('CONFIG_INVALID', `the copying edge "${via.name}" has copy.enabled: false; pgtide join copies the new node through it.`);
      for (const peer of peers) {
        if (peer.copy.enabled) throw new PgtideError('CONFIG_INVALID', `peer edge "${peer.name}" has copy.enabled (the default): set \`copy: { enabled: false }\`, since the new node gets that node's rows from the copy of "${via.name}".`);
      }
      const logger = createLogger();
      const controller = new AbortController();
      process.once('SIGINT', () => controller.abort());
      process.once('SIGTERM', () => controller.abort());
      const prepared: PreparedPeer[] = [];
      for (const peer of peers) prepared.push(await preparePeer(peer, via, logger));
      await waitViaCaughtUp(via, prepared, Number(options.wait) * 1000, controller.signal);
      let copied = false;
      const engine = new Engine(via, logger, {
        onSnapshot: (snapshot) => recordPeerPositions(via, snapshot.name, prepared, logger),
        onStreaming: () => { copied = true; controller.abort(); },
      });
      await engine.run(controller.signal);
      if (!copied) throw new PgtideError('SHUTDOWN', `pgtide join stopped before "${via.name}" finished its copy; \`pgtide start\` of it resumes the copy, but start the peer edges only once its tables are ready (pgtide status).`);
      process.stdout.write(`joined: "${via.name}" copied the new node; ${prepared.map((p) => `"${p.config.name}"`).join(', ') || 'no peer edge'} will apply from the copy's position on.\nNow start ${[via.name, ...prepared.map((p) => p.config.name)].map((n) => `"${n}"`).join(', ')} and the new node's outgoing edges (copy: { enabled: false }).\n`);
    });
}
