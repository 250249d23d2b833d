import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';

import { loadBokehJS } from './bokeh';
import { KaleSidebar } from './panel';

export { KaleAPI } from './api';
export * from './models';
export { KaleApiError, requestAPI } from './request';
export { KaleSidebar } from './panel';

const ICON = `<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">
<path class="jp-icon3" fill="#616161" d="M12 2c-3 4-7 6-7 11a7 7 0 0 0 14 0c0-5-4-7-7-11zm0
18a5 5 0 0 1-5-5c0-3 2-5 5-8.5V20z"/></svg>`;

const kaleIcon = new LabIcon({ name: 'kale-ext:leaf', svgstr: ICON });

/** The "Kale" left sidebar: clusters, searches, trials. */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'kale-ext:sidebar',
  description: 'Clusters, hyperparameter searches and their trials in a sidebar.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    notebooks: INotebookTracker,
    restorer: ILayoutRestorer | null
  ) => {
    const insertCode = (code: string): boolean => {
      const panel = notebooks.currentWidget;
      if (!panel) {
        return false;
      }
      NotebookActions.insertBelow(panel.content);
      panel.content.activeCell?.model.sharedModel.setSource(code);
      app.shell.activateById(panel.id);
      return true;
    };
    const sidebar = new KaleSidebar({ insertCode });
    sidebar.title.icon = kaleIcon;
    app.shell.add(sidebar, 'left', { rank: 600 });
    restorer?.add(sidebar, 'kale-sidebar');
    // Once per page: the search panels' plots need BokehJS, and their outputs no longer
    // carry it inline.
    loadBokehJS().catch(error => console.warn('kale: BokehJS not loaded:', error));
  }
};

export default plugin;
