'use strict'
// `npm run bench`: every store next to its peers in one run, ratios printed.
// BENCH_MS sets the measuring time per case (default 1000 ms);
// `npm run bench -- memory` runs one section, `-- express:redis,file` one
// section's groups; `-- migrate` times the CLI over 1M sessions (MIGRATE_N).
const sections = {
  memory: () => require('./memory'),
  redis: () => require('./redis'),
  postgres: () => require('./postgres'),
  wire: () => require('./wire'),
  file: () => require('./file'),
  codec: () => require('./codec'),
  express: () => require('./express'),
  observe: () => require('./observe'),
  users: () => require('./users'),
}
// Run only when named: minutes long.
const extra = { migrate: () => require('./migrate') }

async function main() {
  const ms = Number(process.env.BENCH_MS || 1000)
  const wanted = process.argv.slice(2).map((a) => a.split(':')).filter(([name]) => sections[name] || extra[name])
  const os = require('node:os')
  console.log(`# rs-store bench, ${new Date().toISOString().slice(0, 10)}, node ${process.version}, ${os.cpus()[0].model} × ${os.cpus().length}`)
  const runs = wanted.length ? wanted : Object.keys(sections).map((name) => [name])
  for (const [name, groups] of runs) await (sections[name] || extra[name])()({ ms, only: groups && groups.split(',') })
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
