import { useEffect, useState } from 'preact/hooks';
import { gql } from './api.ts';
import { useSession } from './session-context.ts';
import type { Connection, Module, ModuleEvent } from './types.ts';
import { ConfirmButton, focusSoon, formatNumber, HealthBadge, ListPanel, Pager, Problem, Time, useAction, useLoad } from './ui.tsx';

const PAGE = 20;
const MODULE_FIELDS = 'id orgId name version enabled hasCredential usageCount lastUsedAt health { status message checkedAt }';

const MODULES = `query DashboardModules($first: Int!, $after: String) {
  modules(first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { ${MODULE_FIELDS} } } }
}`;
const CREDENTIALS = 'query DashboardCredentials { credentials { moduleId fields } }';
const ONE_MODULE = `query DashboardModule($id: ID!) { module(id: $id) { ${MODULE_FIELDS} } }`;
const ENABLE = `mutation DashboardEnable($id: ID!) { enableModule(id: $id) { ${MODULE_FIELDS} } }`;
const DISABLE = `mutation DashboardDisable($id: ID!) { disableModule(id: $id) { ${MODULE_FIELDS} } }`;
const SET_CREDENTIAL = 'mutation DashboardSetCredential($moduleId: ID!, $secret: JSONObject!) { setCredential(moduleId: $moduleId, secret: $secret) { moduleId fields } }';
const DELETE_CREDENTIAL = 'mutation DashboardDeleteCredential($moduleId: ID!) { deleteCredential(moduleId: $moduleId) }';

interface ModuleList {
  modules: Module[];
  totalCount: number;
  hasNextPage: boolean;
  endCursor: string | null;
  fields: Record<string, string[]>;
}

/** Puts a module in its place (the list is ordered by id), or replaces it. */
function upsert(list: Module[], module: Module): Module[] {
  const without = list.filter((m) => m.id !== module.id);
  const at = without.findIndex((m) => m.id > module.id);
  if (at === -1) return [...without, module];
  return [...without.slice(0, at), module, ...without.slice(at)];
}

export function ModulesPanel() {
  const { key, live, changed } = useSession();
  const { run, busy } = useAction();
  const [editing, setEditing] = useState<string | null>(null);

  const list = useLoad<ModuleList>(async () => {
    const [page, credentials] = await Promise.all([
      gql<{ modules: Connection<Module> & { totalCount: number } }>(key, MODULES, { first: PAGE }, 'modules:read'),
      gql<{ credentials: { moduleId: string; fields: string[] }[] }>(key, CREDENTIALS, undefined, 'modules:read'),
    ]);
    return {
      modules: page.modules.edges.map((e) => e.node),
      totalCount: page.modules.totalCount,
      hasNextPage: page.modules.pageInfo.hasNextPage,
      endCursor: page.modules.pageInfo.endCursor,
      fields: Object.fromEntries(credentials.credentials.map((c) => [c.moduleId, c.fields])),
    };
  }, [key]);

  const replace = (module: Module) => list.set((previous) => previous && { ...previous, modules: previous.modules.map((m) => (m.id === module.id ? module : m)) });

  // Live: another client's change shows in place; RESYNC (events may have been missed) refetches.
  useEffect(() => {
    if (!live) return;
    return live.moduleEvents.listen((event: ModuleEvent) => {
      if (event.kind === 'RESYNC') return void list.reload();
      const id = event.moduleId;
      if (id === null) return;
      if (event.kind === 'UNINSTALLED') {
        list.set((previous) => {
          if (!previous || !previous.modules.some((m) => m.id === id)) return previous;
          const fields = { ...previous.fields };
          delete fields[id];
          return { ...previous, modules: previous.modules.filter((m) => m.id !== id), totalCount: previous.totalCount - 1, fields };
        });
        return;
      }
      const update = event.module;
      list.set((previous) => {
        if (!previous) return previous;
        const known = previous.modules.find((m) => m.id === id);
        if (known && update) {
          const fields = update.hasCredential ? previous.fields : { ...previous.fields, [id]: [] };
          return { ...previous, fields, modules: previous.modules.map((m) => (m.id === id ? { ...m, ...update } : m)) };
        }
        return previous;
      });
      if (event.kind === 'INSTALLED') {
        // The event carries the live fields only; the row needs its name and version too.
        void gql<{ module: Module | null }>(key, ONE_MODULE, { id }, 'modules:read').then(
          ({ module }) => {
            if (!module) return;
            list.set((previous) => {
              if (!previous || previous.modules.some((m) => m.id === module.id)) return previous;
              const last = previous.modules[previous.modules.length - 1];
              // Past the last loaded row, the module turns up on a later page.
              const inRange = !previous.hasNextPage || (last !== undefined && module.id < last.id);
              return { ...previous, totalCount: previous.totalCount + 1, modules: inRange ? upsert(previous.modules, module) : previous.modules };
            });
          },
          () => list.reload(),
        );
      }
    });
  }, [live, key, list.reload]);

  const more = async () => {
    const current = list.data;
    if (!current?.endCursor) return;
    await run(async () => {
      const page = await gql<{ modules: Connection<Module> & { totalCount: number } }>(key, MODULES, { first: PAGE, after: current.endCursor }, 'modules:read');
      list.set((previous) => {
        if (!previous) return previous;
        let modules = previous.modules;
        for (const edge of page.modules.edges) modules = upsert(modules, edge.node);
        return { ...previous, modules, totalCount: page.modules.totalCount, hasNextPage: page.modules.pageInfo.hasNextPage, endCursor: page.modules.pageInfo.endCursor };
      });
      return `Loaded ${page.modules.edges.length} more modules.`;
    });
  };

  const toggle = (module: Module) =>
    run(async () => {
      const data = await gql<{ enableModule?: Module; disableModule?: Module }>(key, module.enabled ? DISABLE : ENABLE, { id: module.id }, 'modules:write');
      const next = data.enableModule ?? data.disableModule;
      if (next) replace(next);
      changed();
      return `${module.name} is ${next?.enabled ? 'enabled' : 'disabled'}.`;
    });

  const deleteCredential = (module: Module) =>
    run(async () => {
      await gql<{ deleteCredential: boolean }>(key, DELETE_CREDENTIAL, { moduleId: module.id }, 'credentials:write');
      list.set((previous) => previous && { ...previous, fields: { ...previous.fields, [module.id]: [] }, modules: previous.modules.map((m) => (m.id === module.id ? { ...m, hasCredential: false } : m)) });
      changed();
      return `The credential of ${module.name} is deleted.`;
    });

  const data = list.data;
  return (
    <ListPanel
      id="modules"
      title="Modules"
      list={list}
      loading="Loading modules…"
      empty={{ when: (page) => page.modules.length === 0, text: 'No modules are installed in this org.' }}
    >
      {data && data.modules.length > 0 ? (
        <>
          <div class="table-wrap">
            <table class="modules">
              <caption class="sr-only">Modules of the org: health, state, credential and usage</caption>
              <thead>
                <tr>
                  <th scope="col">Module</th>
                  <th scope="col">Health</th>
                  <th scope="col">Enabled</th>
                  <th scope="col">Credential</th>
                  <th scope="col" class="num">Uses</th>
                  <th scope="col">Last used</th>
                </tr>
              </thead>
              <tbody>
                {data.modules.map((module) => (
                  <ModuleRow
                    key={module.id}
                    module={module}
                    fields={data.fields[module.id] ?? []}
                    busy={busy}
                    editing={editing === module.id}
                    onToggle={() => void toggle(module)}
                    onEdit={(open) => {
                      setEditing(open ? module.id : null);
                      // Into the form when it opens, back to its button when it closes.
                      focusSoon(open ? `#cred-${CSS.escape(module.id)}-value-0` : `[aria-controls="cred-form-${CSS.escape(module.id)}"]`);
                    }}
                    onDelete={() => deleteCredential(module)}
                    onStored={(fields) => {
                      list.set((previous) => previous && { ...previous, fields: { ...previous.fields, [module.id]: fields }, modules: previous.modules.map((m) => (m.id === module.id ? { ...m, hasCredential: true } : m)) });
                      setEditing(null);
                      focusSoon(`[aria-controls="cred-form-${CSS.escape(module.id)}"]`);
                      changed();
                    }}
                  />
                ))}
              </tbody>
            </table>
          </div>
          <Pager
            showing={`Showing ${data.modules.length} of ${data.totalCount}`}
            {...(data.hasNextPage ? { more: { label: 'More modules', onClick: more, disabled: busy } } : {})}
          />
        </>
      ) : null}
    </ListPanel>
  );
}

function ModuleRow(props: {
  module: Module;
  fields: string[];
  busy: boolean;
  editing: boolean;
  onToggle: () => void;
  onEdit: (open: boolean) => void;
  onDelete: () => Promise<unknown>;
  onStored: (fields: string[]) => void;
}) {
  const { module } = props;
  return (
    <>
      <tr data-module={module.id}>
        <th scope="row">
          <span class="module-name">{module.name}</span>
          <span class="muted mono">
            {module.id} · v{module.version}
          </span>
        </th>
        <td>
          <HealthBadge status={module.health.status} />
          {module.health.checkedAt ? (
            <span class="muted small">
              <Time at={module.health.checkedAt} />
            </span>
          ) : null}
          {module.health.message ? <span class="health-message">{module.health.message}</span> : null}
        </td>
        <td>
          <button
            type="button"
            role="switch"
            class="switch"
            aria-checked={module.enabled}
            aria-label={`${module.name} enabled`}
            disabled={props.busy}
            onClick={props.onToggle}
          >
            <span aria-hidden="true" class="switch-track" />
            <span>{module.enabled ? 'On' : 'Off'}</span>
          </button>
        </td>
        <td class="cred-cell">
          <span class={module.hasCredential ? 'badge cred-set' : 'badge cred-none'}>
            {module.hasCredential ? `Stored${props.fields.length ? ` (${props.fields.join(', ')})` : ''}` : 'None'}
          </span>
          <span class="row-actions">
            <button type="button" aria-expanded={props.editing} aria-controls={`cred-form-${module.id}`} onClick={() => props.onEdit(!props.editing)}>
              {module.hasCredential ? 'Replace' : 'Set'}
              <span class="sr-only"> the credential of {module.name}</span>
            </button>
            {module.hasCredential ? <ConfirmButton label="Delete" confirm={`Delete ${module.name}'s credential`} disabled={props.busy} onConfirm={props.onDelete} /> : null}
          </span>
        </td>
        <td class="num">{formatNumber(module.usageCount)}</td>
        <td>
          <Time at={module.lastUsedAt} />
        </td>
      </tr>
      {props.editing ? (
        <tr class="form-row">
          <td colSpan={6}>
            <CredentialForm module={module} onCancel={() => props.onEdit(false)} onStored={props.onStored} />
          </td>
        </tr>
      ) : null}
    </>
  );
}

interface FieldDraft {
  name: string;
  value: string;
}

/** The secret typed into password fields, sent once, then forgotten: the inputs are cleared. */
function CredentialForm(props: { module: Module; onCancel: () => void; onStored: (fields: string[]) => void }) {
  const { key } = useSession();
  const { run, busy } = useAction();
  const [drafts, setDrafts] = useState<FieldDraft[]>([{ name: 'token', value: '' }]);
  const [problem, setProblem] = useState<string | null>(null);
  const base = `cred-${props.module.id}`;

  const edit = (index: number, change: Partial<FieldDraft>) => setDrafts((all) => all.map((d, i) => (i === index ? { ...d, ...change } : d)));

  const submit = async (event: Event) => {
    event.preventDefault();
    const names = drafts.map((d) => d.name.trim());
    if (names.some((n) => n === '') || new Set(names).size !== names.length) {
      setProblem('Every field needs a name of its own.');
      return;
    }
    if (drafts.some((d) => d.value === '')) {
      setProblem('Every field needs a value.');
      return;
    }
    setProblem(null);
    const secret = Object.fromEntries(drafts.map((d) => [d.name.trim(), d.value]));
    await run(async () => {
      const data = await gql<{ setCredential: { fields: string[] } }>(key, SET_CREDENTIAL, { moduleId: props.module.id, secret }, 'credentials:write');
      setDrafts([{ name: 'token', value: '' }]);
      props.onStored(data.setCredential.fields);
      return `The credential of ${props.module.name} is stored (${data.setCredential.fields.join(', ')}); its value is not shown again.`;
    });
  };

  return (
    <form id={`cred-form-${props.module.id}`} class="inline-form" onSubmit={(e) => void submit(e)} aria-label={`Credential of ${props.module.name}`}>
      <p class="muted small">Stored encrypted and write-only: the value is never shown again.</p>
      {drafts.map((draft, index) => (
        <div class="field-pair" key={index}>
          <label for={`${base}-name-${index}`}>Field name</label>
          <input id={`${base}-name-${index}`} value={draft.name} autocomplete="off" spellcheck={false} onInput={(e) => edit(index, { name: e.currentTarget.value })} />
          <label for={`${base}-value-${index}`}>Secret value</label>
          <input
            id={`${base}-value-${index}`}
            type="password"
            value={draft.value}
            autocomplete="new-password"
            spellcheck={false}
            onInput={(e) => edit(index, { value: e.currentTarget.value })}
          />
          {drafts.length > 1 ? (
            <button type="button" onClick={() => setDrafts((all) => all.filter((_, i) => i !== index))}>
              Remove<span class="sr-only"> field {draft.name || index + 1}</span>
            </button>
          ) : null}
        </div>
      ))}
      <Problem text={problem} />
      <div class="form-actions">
        <button type="button" onClick={() => setDrafts((all) => [...all, { name: '', value: '' }])}>
          Add a field
        </button>
        <button type="submit" class="primary" disabled={busy}>
          Store credential
        </button>
        <button type="button" onClick={props.onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
