import { Fragment } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { gql } from './api.ts';
import { useSession } from './session-context.ts';
import type { Module, ModuleHealthEvent, Org } from './types.ts';
import { ErrorNote, focusSoon, formatNumber, HealthBadge, ListPanel, Pager, Time, useAction, useLoad } from './ui.tsx';

const ORG_FIELDS = 'id name status suspendReason suspendedAt createdAt';
const ORGS = `query DashboardOrgs { orgs { ${ORG_FIELDS} } }`;
const SUSPEND = `mutation DashboardSuspend($id: ID!, $reason: String!) { suspendOrg(id: $id, reason: $reason) { ${ORG_FIELDS} } }`;
const RESUME = `mutation DashboardResume($id: ID!) { resumeOrg(id: $id) { ${ORG_FIELDS} } }`;
const UNHEALTHY = 'query DashboardUnhealthy { unhealthyModules(first: 200) { id orgId name health { status message checkedAt } } }';

const ORG_PAGE = 20;
/** Org usages asked for in one operation, as aliases (the gateway allows 15 by default). */
const USAGE_BATCH = 10;

interface OrgUse {
  requests: number;
  runUnits: number;
  quota: number | null;
}

/** This month's use of each org shown, in a few aliased orgUsage queries. */
async function usageOf(key: string, orgIds: string[]): Promise<Record<string, OrgUse>> {
  const result: Record<string, OrgUse> = {};
  for (let start = 0; start < orgIds.length; start += USAGE_BATCH) {
    const batch = orgIds.slice(start, start + USAGE_BATCH);
    const variables = Object.fromEntries(batch.map((id, i) => [`o${i}`, id]));
    const query = `query DashboardOrgUsage(${batch.map((_, i) => `$o${i}: ID!`).join(', ')}) {
      ${batch.map((_, i) => `u${i}: orgUsage(orgId: $o${i}) { requests runUnits quota }`).join('\n')}
    }`;
    const data = await gql<Record<string, OrgUse>>(key, query, variables, 'admin');
    batch.forEach((id, i) => {
      const use = data[`u${i}`];
      if (use) result[id] = use;
    });
  }
  return result;
}

export function AdminView() {
  return (
    <>
      <OrgsPanel />
      <UnhealthyPanel />
    </>
  );
}

function OrgsPanel() {
  const { key } = useSession();
  const { run, busy } = useAction();
  const [shown, setShown] = useState(ORG_PAGE);
  const [suspending, setSuspending] = useState<string | null>(null);
  const orgs = useLoad(async () => (await gql<{ orgs: Org[] }>(key, ORGS, undefined, 'admin')).orgs, [key]);
  const visible = orgs.data?.slice(0, shown) ?? [];
  const visibleIds = visible.map((o) => o.id).join(',');
  const usage = useLoad<Record<string, OrgUse>>(async () => (visibleIds ? usageOf(key, visibleIds.split(',')) : {}), [key, visibleIds]);

  const replace = (org: Org) => orgs.set((all) => all?.map((o) => (o.id === org.id ? org : o)));
  const resume = (org: Org) =>
    run(async () => {
      replace((await gql<{ resumeOrg: Org }>(key, RESUME, { id: org.id }, 'admin')).resumeOrg);
      return `${org.name} is resumed: its keys work again.`;
    });

  return (
    <ListPanel id="orgs" title="Orgs" list={orgs} reload={() => Promise.all([orgs.reload(), usage.reload()])} loading="Loading orgs…">
      {usage.error ? <ErrorNote error={usage.error} /> : null}
      {orgs.data ? (
        <>
          <div class="table-wrap">
            <table class="orgs">
              <caption class="sr-only">Every org on the gateway, with this month's use and status</caption>
              <thead>
                <tr>
                  <th scope="col">Org</th>
                  <th scope="col">Status</th>
                  <th scope="col" class="num">Requests this month</th>
                  <th scope="col" class="num">Run units this month</th>
                  <th scope="col">
                    <span class="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {visible.map((org) => {
                  const use = usage.data?.[org.id];
                  return (
                    <Fragment key={org.id}>
                      <tr data-org={org.id}>
                        <th scope="row">
                          <span class="module-name">{org.name}</span>
                          <span class="muted mono">{org.id}</span>
                        </th>
                        <td>
                          <span class={org.status === 'ACTIVE' ? 'badge org-active' : 'badge org-suspended'}>{org.status === 'ACTIVE' ? 'Active' : 'Suspended'}</span>
                          {org.status === 'SUSPENDED' ? (
                            <span class="small muted">
                              {org.suspendReason} · since <Time at={org.suspendedAt} />
                            </span>
                          ) : null}
                        </td>
                        <td class="num">{use ? formatNumber(use.requests) : '…'}</td>
                        <td class="num">
                          {use ? formatNumber(use.runUnits) : '…'}
                          {use && use.quota !== null ? <span class="muted"> / {formatNumber(use.quota)}</span> : null}
                        </td>
                        <td>
                          {org.id === 'default' ? (
                            <span class="muted small">operator org</span>
                          ) : org.status === 'ACTIVE' ? (
                            <button
                              type="button"
                              class="danger-quiet"
                              aria-expanded={suspending === org.id}
                              aria-controls={`suspend-${org.id}`}
                              onClick={() => {
                                const opening = suspending !== org.id;
                                setSuspending(opening ? org.id : null);
                                if (opening) focusSoon(`#suspend-${CSS.escape(org.id)}-reason`);
                              }}
                            >
                              Suspend<span class="sr-only"> {org.name}</span>
                            </button>
                          ) : (
                            <button type="button" disabled={busy} onClick={() => void resume(org)}>
                              Resume<span class="sr-only"> {org.name}</span>
                            </button>
                          )}
                        </td>
                      </tr>
                      {suspending === org.id ? (
                        <tr class="form-row">
                          <td colSpan={5}>
                            <SuspendForm
                              org={org}
                              onCancel={() => {
                                setSuspending(null);
                                focusSoon(`tr[data-org="${CSS.escape(org.id)}"] button`);
                              }}
                              onSuspended={(next) => {
                                replace(next);
                                setSuspending(null);
                                // The row's button is now Resume.
                                focusSoon(`tr[data-org="${CSS.escape(org.id)}"] button`);
                              }}
                            />
                          </td>
                        </tr>
                      ) : null}
                    </Fragment>
                  );
                })}
              </tbody>
            </table>
          </div>
          <Pager
            showing={`Showing ${visible.length} of ${orgs.data.length}`}
            {...(orgs.data.length > shown ? { more: { label: 'More orgs', onClick: () => setShown((n) => n + ORG_PAGE) } } : {})}
          />
        </>
      ) : null}
    </ListPanel>
  );
}

function SuspendForm(props: { org: Org; onCancel: () => void; onSuspended: (org: Org) => void }) {
  const { key } = useSession();
  const { run, busy } = useAction();
  const [reason, setReason] = useState('');
  const id = `suspend-${props.org.id}`;
  return (
    <form
      id={id}
      class="inline-form"
      aria-label={`Suspend ${props.org.name}`}
      onSubmit={(event) => {
        event.preventDefault();
        if (reason.trim() === '') return;
        void run(async () => {
          const data = await gql<{ suspendOrg: Org }>(key, SUSPEND, { id: props.org.id, reason: reason.trim() }, 'admin');
          props.onSuspended(data.suspendOrg);
          return `${props.org.name} is suspended: its keys are refused until it is resumed.`;
        });
      }}
    >
      <div class="field">
        <label for={`${id}-reason`}>Why suspend {props.org.name}? (shown to operators)</label>
        <input id={`${id}-reason`} value={reason} maxLength={500} required onInput={(e) => setReason(e.currentTarget.value)} />
      </div>
      <div class="form-actions">
        <button type="submit" class="danger" disabled={busy || reason.trim() === ''}>
          Confirm: suspend {props.org.name}
        </button>
        <button type="button" onClick={props.onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}

const BAD = new Set(['DEGRADED', 'UNHEALTHY']);
const same = (a: { orgId: string; id: string }, orgId: string, id: string) => a.orgId === orgId && a.id === id;

function UnhealthyPanel() {
  const { key, live } = useSession();
  const list = useLoad(async () => (await gql<{ unhealthyModules: Module[] }>(key, UNHEALTHY, undefined, 'admin')).unhealthyModules, [key]);

  // Every org's health reports: a module turning bad joins the list, one recovering leaves it.
  useEffect(() => {
    if (!live) return;
    return live.healthEvents.listen((event: ModuleHealthEvent) => {
      if (event.kind === 'RESYNC') return void list.reload();
      const id = event.moduleId;
      if (id === null) return;
      const module = event.module;
      list.set((all) => {
        if (!all) return all;
        const rest = all.filter((m) => !same(m, event.orgId, id));
        if (!module || !BAD.has(module.health.status)) return rest;
        const known = all.find((m) => same(m, event.orgId, id));
        const row = { ...(known ?? { version: '', enabled: true, hasCredential: false, usageCount: 0, lastUsedAt: null }), ...module, orgId: event.orgId } as Module;
        return [row, ...rest];
      });
    });
  }, [live, list.reload]);

  return (
    <ListPanel
      id="unhealthy"
      title="Unhealthy modules, every org"
      list={list}
      loading="Loading…"
      empty={{ when: (modules) => modules.length === 0, text: 'Every reported module is healthy.' }}
    >
      {list.data && list.data.length > 0 ? (
        <div class="table-wrap">
          <table class="unhealthy">
            <caption class="sr-only">Degraded and unhealthy modules across orgs</caption>
            <thead>
              <tr>
                <th scope="col">Org</th>
                <th scope="col">Module</th>
                <th scope="col">Health</th>
                <th scope="col">Reported</th>
              </tr>
            </thead>
            <tbody>
              {list.data.map((m) => (
                <tr key={`${m.orgId}/${m.id}`} data-unhealthy={`${m.orgId}/${m.id}`}>
                  <td class="mono">{m.orgId}</td>
                  <th scope="row">
                    <span class="module-name">{m.name}</span>
                    <span class="muted mono">{m.id}</span>
                  </th>
                  <td>
                    <HealthBadge status={m.health.status} />
                    {m.health.message ? <span class="health-message">{m.health.message}</span> : null}
                  </td>
                  <td>
                    <Time at={m.health.checkedAt} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </ListPanel>
  );
}
