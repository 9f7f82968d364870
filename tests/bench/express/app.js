// app.js — the Twilio status-callback endpoint teams write instead of calllog-ingest, for
// tests/bench/bench_issue11.sh (issue 11: "ingest vs Express + twilio.webhook() + ioredis").
//
// Express parses the form, twilio.webhook() checks X-Twilio-Signature against the same
// public URL and auth token calllog-ingest uses (403 when it does not match), and ioredis
// XADDs the callback's fields to a Redis stream; the answer (204) goes out only after Redis
// acknowledged the XADD, as calllog answers only once the event is durable. One process,
// as such an app is usually run. Settings: PORT, REDIS_URL, STREAM, TWILIO_AUTH_TOKEN,
// WEBHOOK_URL (the full public URL Twilio signed).
'use strict';
const express = require('express');
const Redis = require('ioredis');
const twilio = require('twilio');

const app = express();
const redis = new Redis(process.env.REDIS_URL);
const stream = process.env.STREAM || 'express:events';

app.post(
  '/twilio/log-call',
  express.urlencoded({ extended: false }),
  twilio.webhook(process.env.TWILIO_AUTH_TOKEN, { url: process.env.WEBHOOK_URL }),
  async (req, res) => {
    try {
      const b = req.body;
      await redis.xadd(stream, '*', 'call_sid', b.CallSid || '', 'status', b.CallStatus || '',
        'received_at', new Date().toISOString(), 'event', JSON.stringify(b));
      res.status(204).end();
    } catch (e) {
      res.status(503).end();
    }
  });

app.get('/healthz', (req, res) => res.type('text/plain').send('ok'));

app.listen(Number(process.env.PORT), '127.0.0.1');
