'use strict';
// The one hook the in-sandbox SDK (frazil-sdk) uses to talk to the platform.
//
//   const bridge = require('../bridge');
//   const reply = await bridge.sendSdkCall({op: 'db.insert', table: 'notes', record: {...}});
//
// sendSdkCall(message) sends {"type": "sdk_call", "call": <id>, "invocation_id": <current
// invocation, if any>, "sdk_token": <the current invocation's token, from its invoke frame>,
// ...message} on the protocol channel and returns a Promise that resolves
// with the matching {"type": "sdk_reply", "call": <id>, ...} frame, whatever else it carries
// (the SDK decides what ok/error mean). Many calls may be in flight at once. The loop installs
// the sender when it starts; before that, calls reject.

let sender = null;
let current = null; // the invocation being served: {id, deadline_ms, sdk_token, user} or null

function install(fn) {
  sender = fn;
}

function setCurrentInvocation(invocation) {
  current = invocation;
}

function currentInvocation() {
  return current;
}

/** Whether the runtime loop has connected the channel (false outside the platform). */
function connected() {
  return sender !== null;
}

function sendSdkCall(message) {
  if (sender === null) {
    return Promise.reject(new Error('frazil-sdk: the platform channel is not connected'));
  }
  return sender(message);
}

module.exports = {
  install, connected, sendSdkCall, setCurrentInvocation, currentInvocation,
};
