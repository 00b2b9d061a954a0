// The seed's pool, as written in its design document (controlled-parallelism.md §3):
// N async workers over one event loop, each taking the next item; order kept,
// errors isolated. Unchanged except for the comments.

export async function runWithConcurrency(items, workerFn, concurrency = 4) {
  const results = [];
  let index = 0;

  async function worker(workerId) {
    while (index < items.length) {
      const currentIndex = index++;
      const item = items[currentIndex];

      try {
        const result = await workerFn(item);
        results[currentIndex] = result;
      } catch (err) {
        results[currentIndex] = {
          agentId: item,
          status: "ERROR",
          error: err.message,
          workerId
        };
      }
    }
  }

  const workers = Array.from(
    { length: concurrency },
    (_, i) => worker(i + 1)
  );

  await Promise.all(workers);
  return results;
}
