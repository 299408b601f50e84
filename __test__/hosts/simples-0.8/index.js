'use strict'
// simpleS 0.8.8, resolved from this folder's own node_modules.
module.exports = require('simples')
