/**
 * Running independent steps of a run together (the overlay mount beside the
 * network, lookups in the root beside the name files) without losing track
 * of any: settleAll waits for every one, so nothing still runs when the
 * caller goes on to clean up after a failure.
 *
 * Failure: the first failure in the order the steps are given (not the first
 * in time), so a run with two faults reports the same one every time.
 */
export async function settleAll<T extends readonly unknown[]>(work: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const results = await Promise.allSettled(work);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
