import { gql } from './api.ts';
import { useSession } from './session-context.ts';
import type { AuditRecord, Connection } from './types.ts';
import { ListPanel, Pager, Time, useAction, useLoad } from './ui.tsx';

const PAGE = 15;
const AUDIT = `query DashboardAudit($first: Int!, $after: String) {
  auditLog(first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    edges { node { id seq at action outcome actorVia actorKeyPrefix targetId requestId } }
  }
}`;

interface AuditPage {
  records: AuditRecord[];
  hasNextPage: boolean;
  endCursor: string | null;
}

function label(action: string): string {
  const words = action.toLowerCase().split('_');
  const first = words[0] ?? '';
  return [first.charAt(0).toUpperCase() + first.slice(1), ...words.slice(1)].join(' ');
}

export function AuditPanel() {
  const { key, changes } = useSession();
  const { run, busy } = useAction();
  const audit = useLoad<AuditPage>(async () => {
    const data = await gql<{ auditLog: Connection<AuditRecord> }>(key, AUDIT, { first: PAGE }, 'audit:read');
    return { records: data.auditLog.edges.map((e) => e.node), hasNextPage: data.auditLog.pageInfo.hasNextPage, endCursor: data.auditLog.pageInfo.endCursor };
  }, [key, changes]);

  const more = () =>
    run(async () => {
      const after = audit.data?.endCursor;
      if (!after) return;
      const data = await gql<{ auditLog: Connection<AuditRecord> }>(key, AUDIT, { first: PAGE, after }, 'audit:read');
      audit.set((previous) => {
        if (!previous) return previous;
        const seen = new Set(previous.records.map((r) => r.id));
        const records = [...previous.records, ...data.auditLog.edges.map((e) => e.node).filter((r) => !seen.has(r.id))];
        return { records, hasNextPage: data.auditLog.pageInfo.hasNextPage, endCursor: data.auditLog.pageInfo.endCursor };
      });
      return `Loaded ${data.auditLog.edges.length} older audit records.`;
    });

  return (
    <ListPanel
      id="audit"
      title="Audit trail"
      list={audit}
      loading="Loading the audit trail…"
      empty={{ when: (trail) => trail.records.length === 0, text: 'Nothing recorded yet.' }}
    >
      {audit.data && audit.data.records.length > 0 ? (
        <>
          <div class="table-wrap">
            <table class="audit">
              <caption class="sr-only">Audit records, newest first</caption>
              <thead>
                <tr>
                  <th scope="col" class="num">#</th>
                  <th scope="col">When</th>
                  <th scope="col">Action</th>
                  <th scope="col">Target</th>
                  <th scope="col">By</th>
                  <th scope="col">Outcome</th>
                </tr>
              </thead>
              <tbody>
                {audit.data.records.map((r) => (
                  <tr key={r.id}>
                    <td class="num">{r.seq}</td>
                    <td>
                      <Time at={r.at} />
                    </td>
                    <td>{label(r.action)}</td>
                    <td class="mono">{r.targetId ?? '—'}</td>
                    <td>{r.actorVia === 'API' ? <span class="mono">{r.actorKeyPrefix ?? 'a key'}…</span> : r.actorVia === 'CLI' ? 'the CLI' : 'the gateway'}</td>
                    <td>
                      <span class={r.outcome === 'SUCCESS' ? 'badge outcome-ok' : 'badge outcome-refused'}>{label(r.outcome)}</span>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager
            showing={`Showing ${audit.data.records.length} records`}
            {...(audit.data.hasNextPage ? { more: { label: 'Older records', onClick: more, disabled: busy } } : {})}
          />
        </>
      ) : null}
    </ListPanel>
  );
}
