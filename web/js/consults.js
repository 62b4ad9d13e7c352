/**
 * Consult tickets as the pages see them (远程会诊): field access that tolerates the server's
 * naming, waiting time, and the order and labels of urgencies and outcomes.
 */

export const URGENCIES = ['emergency', 'urgent', 'routine'];
export const OUTCOMES = ['resolved', 'referred', 'follow_up', 'no_show', 'other'];

/** The media session id of a ticket, once it has one. */
export function ticketSession(ticket) {
  const session = ticket?.session ?? ticket?.session_id ?? null;
  return typeof session === 'object' && session !== null ? session.id : session;
}

/** Seconds a ticket has been waiting at `nowMs` (from waited_s/created_at, whichever exists). */
export function waitingSeconds(ticket, nowMs, receivedAtMs = nowMs) {
  if (typeof ticket?.waiting_s === 'number') return ticket.waiting_s + (nowMs - receivedAtMs) / 1000;
  const created = ticket?.created_at ?? ticket?.requested_at;
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
  return ticket?.site?.name ?? ticket?.site_name ?? ticket?.clinic?.name ?? ticket?.clinic_name ?? '';
}

/** The specialty's display name in `lang`, from the specialties list when known. */
export function specialtyName(id, specialties, lang) {
  const found = (specialties || []).find((s) => s.id === id);
  if (!found) return id || '';
  return lang === 'en' ? found.name_en : found.name_zh;
}

/** The ticket's state: waiting | escalated | matched | handed_over | admitted | ended | cancelled. */
export function ticketState(ticket) {
  return ticket?.status ?? ticket?.state ?? null;
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
