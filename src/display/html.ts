// Escaping for the HTML parts of MIME bundles (tables, figures, notices).

/** Text safe inside HTML elements and quoted attributes. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
