import { runLane, type LaneWorkerCommand, type LaneWorkerReply } from './load.ts';

/**
 * A lane of bench/load.ts's driveLanes in a process of its own, so that its load generator's work
 * (the flood's large answers) does not delay the responses of the lanes in the bench's process.
 * Runs one lane run per `run` command and answers with its result; the parent kills it after.
 */
const reply = (message: LaneWorkerReply) => process.send?.(message);
process.on('message', (message: LaneWorkerCommand) => {
  if (message.type !== 'run') return;
  runLane(message.url, message.lane, message.seconds, message.record).then(
    (result) => reply({ type: 'done', result }),
    (error: unknown) => reply({ type: 'error', error: String(error) }),
  );
});
process.on('disconnect', () => process.exit(0));
reply({ type: 'ready' });
