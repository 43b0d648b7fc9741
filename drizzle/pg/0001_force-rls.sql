-- Custom: the org that exists after every migration (DEFAULT_ORG in src/store/types.ts), created_at
-- in the store's ISO-8601 UTC text. Before FORCE below: after it, the owner too is held to the
-- policies, and orgs has none that admits an insert.
INSERT INTO "orgs" ("id", "name", "created_at")
VALUES ('default', 'Default', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
ON CONFLICT ("id") DO NOTHING;--> statement-breakpoint
-- drizzle-kit enables row-level security but never forces it (drizzle-orm issue 5819), and
-- without FORCE the tables' owner, the role that migrates, bypasses the policies.
ALTER TABLE "orgs" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "api_keys" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "modules" FORCE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "credentials" FORCE ROW LEVEL SECURITY;
