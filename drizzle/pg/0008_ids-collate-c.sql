-- Custom: ids and the columns pages are ordered by compare byte for byte (COLLATE "C"), whatever
-- the database's default collation, so pages, cursors (`module_id > $after`) and every ORDER BY
-- answer in the order SQLite's BINARY collation gives (an en-US ICU database sorts 'a_1 a-2 a.b
-- a1 ab'; SQLite and C sort 'a-2 a.b a1 a_1 ab'). A column a policy reads cannot change type, so the
-- org walls are dropped and made again, as they were (0000), in this same transaction.
DROP POLICY "api_keys_org_wall" ON "api_keys";--> statement-breakpoint
DROP POLICY "credentials_org_wall" ON "credentials";--> statement-breakpoint
DROP POLICY "modules_org_wall" ON "modules";--> statement-breakpoint
DROP POLICY "orgs_org_wall" ON "orgs";--> statement-breakpoint
ALTER TABLE "orgs" ALTER COLUMN "id" TYPE text COLLATE "C";--> statement-breakpoint
ALTER TABLE "api_keys" ALTER COLUMN "id" TYPE text COLLATE "C", ALTER COLUMN "org_id" TYPE text COLLATE "C", ALTER COLUMN "created_at" TYPE text COLLATE "C";--> statement-breakpoint
ALTER TABLE "modules" ALTER COLUMN "org_id" TYPE text COLLATE "C", ALTER COLUMN "module_id" TYPE text COLLATE "C";--> statement-breakpoint
ALTER TABLE "credentials" ALTER COLUMN "org_id" TYPE text COLLATE "C", ALTER COLUMN "module_id" TYPE text COLLATE "C";--> statement-breakpoint
CREATE POLICY "api_keys_org_wall" ON "api_keys" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));--> statement-breakpoint
CREATE POLICY "credentials_org_wall" ON "credentials" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));--> statement-breakpoint
CREATE POLICY "modules_org_wall" ON "modules" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));--> statement-breakpoint
CREATE POLICY "orgs_org_wall" ON "orgs" AS PERMISSIVE FOR SELECT TO public USING (id = (select current_setting('app.org_id', true)));
