'use strict'
// require('rs-store/express'): see lib/hosts/express.js
module.exports = require('./lib/hosts/express')
