'use strict'
// require('rs-store/fastify'): see lib/hosts/fastify.js
module.exports = require('./lib/hosts/fastify')
