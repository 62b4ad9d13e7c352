/**
 * The WebSocket to /ws (PROTOCOL.md §2): `join` first, heartbeats, and reconnection that
 * keeps the seat (`join {credential, resume}`) after a lost connection.
 *
 * Frames are dispatched by `type` to listeners added with `on(type, fn)`; `on('state', fn)`
 * tells the connection's state: connecting | online | reconnecting | refused | closed.
 *
 * Several nodes (PROTOCOL.md §5): a `redirect {url, session}` frame moves the connection to
 * `<url>/ws` (join again with the same credential, no resume token; `enter` again when the
 * redirect answered one); listeners get a `moved {url}` pseudo-frame right before the new
 * node's `welcome`, so the media is rebuilt there. A lost connection after a move is retried on
 * the node and on the address the page started from, alternately.
 */

const RESUME_WINDOW_MS = 30_000;
const JOIN_REFUSED = 4001;
const OPEN = 1; // WebSocket.OPEN

/** Milliseconds to wait before reconnect attempt `attempt` (0-based): 0.5, 1, 2, 4, 4… s. */
export function reconnectDelay(attempt) {
  return Math.min(4000, 500 * 2 ** Math.max(0, attempt));
}

/** The ws:// or wss:// URL of /ws for a page at `location`. */
export function socketUrl(location) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

/** The /ws URL of a node named by a `redirect` frame's `url` (http(s)://host[:port][/base]). */
export function redirectSocketUrl(nodeUrl) {
  const url = new URL(nodeUrl);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not an http(s) URL');
  const scheme = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${url.host}${url.pathname.replace(/\/+$/, '')}/ws`;
}

/** The URL to try on reconnect attempt `attempt`: after a move, the node and the origin take
 * turns (the node may have died and the origin places the room again). */
export function retryUrl(current, origin, attempt) {
  return current === origin || attempt % 2 === 0 ? current : origin;
}

export class SignalingChannel {
  constructor(credential, { url = socketUrl(window.location), WebSocketImpl = WebSocket } = {}) {
    this.credential = credential;
    this.url = url;
    this.originUrl = url;
    this.WebSocketImpl = WebSocketImpl;
    this.resumeUrl = null;
    this.entered = null;
    this.moving = null;
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

  open(url = this.url) {
    clearTimeout(this.retryTimer);
    const socket = new this.WebSocketImpl(url);
    this.socket = socket;
    socket.addEventListener('open', () => {
      // A resume token is good only on the node that gave it.
      const resume = this.resumeToken && this.lostAt !== null && url === this.resumeUrl
        && Date.now() - this.lostAt < RESUME_WINDOW_MS ? this.resumeToken : undefined;
      socket.send(JSON.stringify({ type: 'join', credential: this.credential, resume }));
    });
    socket.addEventListener('message', (event) => {
      if (socket === this.socket) this.url = url;
    }, { once: true });
    socket.addEventListener('message', (event) => this.receive(event.data));
    socket.addEventListener('close', (event) => this.closed(socket, event));
  }

  receive(raw) {
    let frame;
    try { frame = JSON.parse(raw); } catch { return; }
    if (!frame || typeof frame.type !== 'string') return;
    if (frame.type === 'welcome') {
      const moved = this.moving;
      this.moving = null;
      const resumed = !moved && this.welcome !== null
        && frame.participant?.id === this.welcome.participant?.id && this.lostAt !== null;
      this.welcome = frame;
      this.resumeToken = frame.resume;
      this.resumeUrl = this.url;
      this.lostAt = null;
      this.attempt = 0;
      this.startHeartbeat(frame.heartbeat_s);
      if (moved) this.emit('moved', { type: 'moved', url: this.url });
      this.setState('online', { resumed, moved: Boolean(moved) });
      if (moved?.session && moved.session === this.entered) {
        this.send({ type: 'enter', session: moved.session });
      }
    }
    if (frame.type === 'session' || frame.type === 'queue') this.latest.set(frame.type, frame);
    if (frame.type === 'ended' && frame.session === this.entered) this.entered = null;
    this.emit(frame.type, frame);
    this.emit('*', frame);
    if (frame.type === 'redirect') this.follow(frame);
  }

  /** Leaves this node for the one named by a `redirect` frame (PROTOCOL.md §5). */
  follow(frame) {
    let target;
    try {
      target = redirectSocketUrl(String(frame.url));
    } catch {
      console.warn('ignored a redirect to an invalid URL');
      return;
    }
    const old = this.socket;
    this.socket = null;
    clearInterval(this.heartbeat);
    old?.close(1000, 'redirected');
    this.moving = { session: frame.session ?? null };
    this.lostAt = null;
    this.resumeToken = null;
    this.url = target;
    this.setState('reconnecting', { redirect: true });
    this.open(target);
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
    const url = retryUrl(this.url, this.originUrl, this.attempt);
    if (url !== this.resumeUrl) this.moving = this.moving || { session: this.entered };
    this.retryTimer = setTimeout(() => this.open(url), reconnectDelay(this.attempt));
    this.attempt += 1;
  }

  /** Sends a frame; false when the connection is not open (the frame is dropped). */
  send(frame) {
    if (this.socket?.readyState !== OPEN) return false;
    if (frame.type === 'enter') this.entered = frame.session;
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
