#!/usr/bin/env node
'use strict'
// `npx rs-store <command> <store> [args] [options]`: see lib/cli.js, or
// `rs-store --help`.
require('../lib/cli')
  .main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code
  })
