'use strict'
// require('rs-store/simples-0.8'): see lib/hosts/simples-0.8.js
module.exports = require('./lib/hosts/simples-0.8')
