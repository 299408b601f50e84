'use strict'
// A worker pool as piscina and test runners run one: the main thread never
// loads rs-store, its workers do (pool-worker.js). `node pool.js <scenario>
// <dir> <redisUrl>` prints one JSON line of what the workers answered and
// exits 0; a crash of the process is what __test__/workers.test.js looks for.
//   sequential: three workers, one after another
//   concurrent: four workers at once, then four more once they all exited
//   terminate:  workers terminated with calls in flight, then one that
//               checks everything, three times over
const { Worker } = require('node:worker_threads')
const path = require('node:path')

const [scenario, dir, redisUrl] = process.argv.slice(2)
const script = path.join(__dirname, 'pool-worker.js')
if (require.cache[require.resolve('../..')]) throw new Error('the main thread must not load rs-store')

/** Runs one worker to its exit; answers its message (or 'terminated'). */
function run(tag, busy) {
  return new Promise((resolve, reject) => {
    const w = new Worker(script, { workerData: { tag, dir, redisUrl, busy } })
    let answer
    w.on('message', (m) => {
      if (m === 'busy') {
        answer = 'terminated'
        w.terminate()
      } else answer = m
    })
    w.on('error', reject)
    w.on('exit', () => resolve(answer))
  })
}

async function main() {
  const answers = []
  if (scenario === 'sequential') {
    for (let i = 1; i <= 3; i++) answers.push(await run(`seq${i}`))
  } else if (scenario === 'concurrent') {
    for (let wave = 1; wave <= 2; wave++) answers.push(...(await Promise.all([1, 2, 3, 4].map((i) => run(`con${wave}-${i}`)))))
  } else if (scenario === 'terminate') {
    for (let i = 1; i <= 3; i++) {
      answers.push(await run(`busy${i}`, true))
      // A busy worker beside a checking one: one ends while the other works.
      answers.push(...(await Promise.all([run(`busyside${i}`, true), run(`check${i}`)])))
    }
  } else throw new Error(`unknown scenario ${scenario}`)
  process.stdout.write(JSON.stringify(answers) + '\n')
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
