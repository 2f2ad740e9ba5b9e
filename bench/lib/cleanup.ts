/**
 * A stack of asynchronous clean-up steps. Steps run in reverse order of
 * registration (a subscription is dropped before the cluster it lives in is
 * destroyed) and every step runs even when an earlier one fails: a benchmark
 * that dies half-way must still leave no server, slot or child process behind.
 */
export class Cleanup {
  readonly #steps: { readonly label: string; readonly run: () => Promise<void> }[] = [];

  add(label: string, run: () => Promise<void>): void {
    this.#steps.push({ label, run });
  }

  async runAll(log: (message: string) => void): Promise<void> {
    for (let step = this.#steps.pop(); step; step = this.#steps.pop()) {
      try {
        await step.run();
      } catch (error) {
        log(`clean-up step "${step.label}" failed: ${errorMessage(error)}`);
      }
    }
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
