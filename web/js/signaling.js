/**
 * The WebSocket to /ws (PROTOCOL.md §2): `join` first, heartbeats, and reconnection that
 * keeps the seat (`join {credential, resume}`) after a lost connection.
 *
 * Frames are dispatched by `type` to listeners added with `on(type, fn)`; `on('state', fn)`
 * tells the connection's state: connecting | online | reconnecting | refused | closed.
 */

const RESUME_WINDOW_MS = 30_000;
const JOIN_REFUSED = 4001;

/** Milliseconds to wait before reconnect attempt `attempt` (0-based): 0.5, 1, 2, 4, 4… s. */
export function reconnectDelay(attempt) {
  return Math.min(4000, 500 * 2 ** Math.max(0, attempt));
}

/** The ws:// or wss:// URL of /ws for a page at `location`. */
export function socketUrl(location) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

export class SignalingChannel {
  constructor(credential, { url = socketUrl(window.location) } = {}) {
    this.credential = credential;
    this.url = url;
    this.state = 'connecting';
    this.welcome = null;
    this.resumeToken = null;
    this.lostAt = null;
    this.attempt = 0;
    this.socket = null;
    this.listeners = new Map();
    this.heartbeat = null;
    this.retryTimer = null;
    this.closedByUs = false;
    this.latest = new Map();
  }

  /** The last frame received of a state-carrying `type` (session, queue), or undefined. */
  last(type) {
    return this.latest.get(type);
  }

  on(type, listener) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(listener);
    return () => this.listeners.get(type).delete(listener);
  }

  emit(type, frame) {
    for (const listener of this.listeners.get(type) || []) {
      try {
        listener(frame);
      } catch (err) {
        console.error(`listener for ${type} failed`, err);
      }
    }
  }

  setState(state, detail) {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', { state, detail });
  }

  /** Opens the connection; resolves with the `welcome` frame of the first join. */
  connect() {
    return new Promise((resolve, reject) => {
      const offWelcome = this.on('welcome', (w) => { offWelcome(); offState(); resolve(w); });
      const offState = this.on('state', ({ state, detail }) => {
        if (state === 'refused') { offWelcome(); offState(); reject(detail); }
      });
      this.open();
    });
  }

  open() {
    clearTimeout(this.retryTimer);
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener('open', () => {
      const resume = this.resumeToken && this.lostAt !== null
        && Date.now() - this.lostAt < RESUME_WINDOW_MS ? this.resumeToken : undefined;
      socket.send(JSON.stringify({ type: 'join', credential: this.credential, resume }));
    });
    socket.addEventListener('message', (event) => this.receive(event.data));
    socket.addEventListener('close', (event) => this.closed(socket, event));
  }

  receive(raw) {
    let frame;
    try { frame = JSON.parse(raw); } catch { return; }
    if (!frame || typeof frame.type !== 'string') return;
    if (frame.type === 'welcome') {
      const resumed = this.welcome !== null
        && frame.participant?.id === this.welcome.participant?.id && this.lostAt !== null;
      this.welcome = frame;
      this.resumeToken = frame.resume;
      this.lostAt = null;
      this.attempt = 0;
      this.startHeartbeat(frame.heartbeat_s);
      this.setState('online', { resumed });
    }
    if (frame.type === 'session' || frame.type === 'queue') this.latest.set(frame.type, frame);
    this.emit(frame.type, frame);
    this.emit('*', frame);
  }

  startHeartbeat(seconds) {
    clearInterval(this.heartbeat);
    const everyMs = Math.max(2, Math.min(60, Number(seconds) || 15)) * 1000;
    this.heartbeat = setInterval(() => this.send({ type: 'ping', t: Date.now() / 1000 }), everyMs);
  }

  closed(socket, event) {
    if (socket !== this.socket) return;
    clearInterval(this.heartbeat);
    if (this.closedByUs) {
      this.setState('closed');
      return;
    }
    if (event.code === JOIN_REFUSED) {
      this.setState('refused', { code: event.code, reason: event.reason });
      return;
    }
    if (this.lostAt === null) this.lostAt = Date.now();
    this.setState('reconnecting', { code: event.code });
    this.retryTimer = setTimeout(() => this.open(), reconnectDelay(this.attempt));
    this.attempt += 1;
  }

  /** Sends a frame; false when the connection is not open (the frame is dropped). */
  send(frame) {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  close() {
    this.closedByUs = true;
    clearInterval(this.heartbeat);
    clearTimeout(this.retryTimer);
    this.socket?.close(1000, 'bye');
  }
}
