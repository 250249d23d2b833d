/** Small DOM builders shared by the sidebar's parts. */

export type Attrs = Record<string, string | undefined>;

/** A DOM element with attributes and children (strings become text). */
export function h(
  tag: string,
  attrs: Attrs = {},
  ...children: (Node | string | null | undefined)[]
): HTMLElement {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined) {
      el.setAttribute(key, value);
    }
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      el.append(child);
    }
  }
  return el;
}

/** A button with the lab's look; `title` is its tooltip (and accessible name when iconic). */
export function button(
  label: string,
  cls: string,
  onClick: () => void,
  title?: string
): HTMLElement {
  const el = h(
    'button',
    { class: `jp-Button kale-button ${cls}`, type: 'button', title, 'aria-label': title },
    label
  );
  el.addEventListener('click', event => {
    event.stopPropagation(); // a button inside a clickable row acts alone
    onClick();
  });
  return el;
}

/**
 * `text` with a line-break opportunity after each `_`, `.` and `-`, so a long metric
 * name ("validation_loss") may wrap in a narrow column header at its word boundaries.
 */
export function breakable(text: string): (Node | string)[] {
  return text
    .split(/(?<=[_.-])/)
    .flatMap((part, i) => (i ? [document.createElement('wbr'), part] : [part]));
}
