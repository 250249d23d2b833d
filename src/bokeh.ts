/**
 * BokehJS, loaded once per page from the kale server extension
 * (`<base_url>/kale/static/bokeh/`, the kernel's own bokeh version, no CDN), so the
 * panels' plots render without each notebook output carrying BokehJS inline.
 */

import { PageConfig, URLExt } from '@jupyterlab/coreutils';

/** The BokehJS bundles a panel's figures and widgets need, in load order. */
export const BOKEH_BUNDLES = ['bokeh.min.js', 'bokeh-gl.min.js', 'bokeh-widgets.min.js', 'bokeh-tables.min.js'];

function loadScript(src: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = src;
    script.async = false;
    script.dataset.kale = 'bokehjs';
    script.onload = () => resolve();
    script.onerror = () => reject(new Error(`cannot load ${src}`));
    document.head.appendChild(script);
  });
}

let loading: Promise<void> | null = null;

/** Load BokehJS unless the page has it already; the same promise for every caller. */
export function loadBokehJS(): Promise<void> {
  const w = window as unknown as { Bokeh?: unknown };
  if (loading === null) {
    loading =
      w.Bokeh !== undefined
        ? Promise.resolve()
        : BOKEH_BUNDLES.reduce(
            (previous, name) =>
              previous.then(() =>
                loadScript(URLExt.join(PageConfig.getBaseUrl(), 'kale', 'static', 'bokeh', name))
              ),
            Promise.resolve()
          );
  }
  return loading;
}
