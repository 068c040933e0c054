// How the worker backend's component thread waits for the reply to one of its requests.
//
// The owning thread answers by posting the reply on the port, then storing 1 in `ctrl[0]` and
// notifying. The waiting thread consumes the flag (stores 0) *before* it drains the port: a
// reply posted after that store sets the flag again, so the wait that follows returns at once.
// (Storing 0 after draining could erase the flag of a reply posted in between, and the reply
// would sit on the port until the deadline.)

/**
 * Waits for the message with `id` (`receive()` gives the next message on the port, or
 * undefined), dropping others (replies to calls given up earlier). Returns it, or null once
 * `deadline` (performance.now()) has passed. `wait` is Atomics.wait (tests replace it).
 */
export function awaitReply(ctrl, receive, id, deadline, wait = Atomics.wait) {
  for (;;) {
    Atomics.store(ctrl, 0, 0);
    let msg;
    while ((msg = receive()) !== undefined) if (msg.id === id) return msg;
    const left = deadline - performance.now();
    if (left <= 0) return null;
    wait(ctrl, 0, 0, left);
  }
}
