/**
 * Consult tickets as the pages see them (远程会诊): field access that tolerates the server's
 * naming, waiting time, and the order and labels of urgencies and outcomes.
 */

export const URGENCIES = ['emergency', 'urgent', 'routine'];
export const OUTCOMES = ['resolved', 'referred', 'follow_up', 'no_show', 'other'];

/**
 * A ticket as the pages use it, from any of the server's shapes: a console `queue` item
 * ({consult, state, waited_s, …}), a ConsultTicket ({id, state, requested_at, …}) or a waiting
 * room view ({ticket, position, estimated_wait_s}).
 */
export function normalizeTicket(raw) {
  if (!raw) return null;
  const base = raw.ticket ? { ...raw.ticket, position: raw.position,
    estimated_wait_s: raw.estimated_wait_s } : { ...raw };
  base.id = base.id ?? base.consult;
  return base;
}

/** The ticket's state: waiting | escalated | matched | handed_over | admitted | ended | cancelled. */
export function ticketState(ticket) {
  return ticket?.status ?? ticket?.state ?? null;
}

/** The media session of a ticket once admitted (a consult's session is the consult itself). */
export function ticketSession(ticket) {
  const session = ticket?.session ?? ticket?.session_id ?? null;
  if (session !== null) return typeof session === 'object' ? session.id : session;
  return ticketState(ticket) === 'admitted' ? ticket.id ?? ticket.consult ?? null : null;
}

/** Seconds a ticket has been waiting at `nowMs` (from waited_s or requested_at). */
export function waitingSeconds(ticket, nowMs, receivedAtMs = nowMs) {
  const waited = ticket?.waited_s ?? ticket?.waiting_s;
  if (typeof waited === 'number') return waited + (nowMs - receivedAtMs) / 1000;
  const created = ticket?.requested_at ?? ticket?.created_at;
  if (typeof created === 'number') return Math.max(0, nowMs / 1000 - created);
  if (typeof created === 'string') {
    const parsed = Date.parse(created);
    if (!Number.isNaN(parsed)) return Math.max(0, (nowMs - parsed) / 1000);
  }
  return null;
}

/** Queue order for display: emergencies first, then urgent, then by waiting time (longest first). */
export function sortQueue(items, nowMs) {
  const rank = (t) => {
    const i = URGENCIES.indexOf(t.urgency);
    return i === -1 ? URGENCIES.length : i;
  };
  return [...items].sort((a, b) => rank(a) - rank(b)
    || (waitingSeconds(b, nowMs) ?? 0) - (waitingSeconds(a, nowMs) ?? 0));
}

/** The name of the site a ticket comes from. */
export function ticketSiteName(ticket) {
  return ticket?.clinic_name ?? ticket?.site?.name ?? ticket?.site_name ?? ticket?.clinic_site_id ?? '';
}

/** The specialty's display name in `lang`, from the specialties list when known. */
export function specialtyName(id, specialties, lang) {
  const found = (specialties || []).find((s) => s.id === id);
  if (!found) return id || '';
  return lang === 'en' ? found.name_en : found.name_zh;
}

/** Whether a ticket is (still) waiting for a doctor to take it. */
export function isWaiting(ticket) {
  return ['waiting', 'escalated'].includes(ticketState(ticket));
}

/** Whether a doctor has taken the ticket and will admit the clinic. */
export function isTaken(ticket) {
  return ['matched', 'handed_over'].includes(ticketState(ticket));
}

/** The expert who holds the ticket, if any. */
export function ticketExpert(ticket) {
  return ticket?.expert_id ?? ticket?.expert ?? null;
}
