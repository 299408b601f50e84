'use strict'
// `npm run bench`: every store next to its peers in one run, ratios printed.
// BENCH_MS sets the measuring time per case (default 1000 ms);
// `npm run bench -- memory` runs one section.
const sections = {
  memory: () => require('./memory'),
  redis: () => require('./redis'),
  file: () => require('./file'),
  codec: () => require('./codec'),
}

async function main() {
  const ms = Number(process.env.BENCH_MS || 1000)
  const wanted = process.argv.slice(2).filter((a) => sections[a])
  const os = require('node:os')
  console.log(`# rs-store bench, ${new Date().toISOString().slice(0, 10)}, node ${process.version}, ${os.cpus()[0].model} × ${os.cpus().length}`)
  for (const name of wanted.length ? wanted : Object.keys(sections)) await sections[name]()({ ms })
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
