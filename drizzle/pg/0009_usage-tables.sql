CREATE TABLE "org_quotas" (
	"org_id" text PRIMARY KEY NOT NULL,
	"run_units_per_month" bigint,
	"requests_per_minute" integer,
	"burst" integer,
	"updated_at" text NOT NULL
);
--> statement-breakpoint
ALTER TABLE "org_quotas" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE TABLE "run_unit_events" (
	"org_id" text NOT NULL,
	"id" text NOT NULL,
	"idempotency_key" text NOT NULL,
	"units" bigint NOT NULL,
	"module_id" text,
	"occurred_at" text NOT NULL,
	"recorded_at" text NOT NULL,
	"key_id" text,
	CONSTRAINT "run_unit_events_org_id_id_pk" PRIMARY KEY("org_id","id"),
	CONSTRAINT "run_unit_events_idempotency_key" UNIQUE("org_id","idempotency_key")
);
--> statement-breakpoint
ALTER TABLE "run_unit_events" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE TABLE "usage_hours" (
	"org_id" text NOT NULL,
	"hour_start" text NOT NULL,
	"run_units" bigint DEFAULT 0 NOT NULL,
	"requests" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "usage_hours_org_id_hour_start_pk" PRIMARY KEY("org_id","hour_start")
);
--> statement-breakpoint
ALTER TABLE "usage_hours" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE TABLE "usage_months" (
	"org_id" text NOT NULL,
	"month_start" text NOT NULL,
	"run_units" bigint DEFAULT 0 NOT NULL,
	"requests" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "usage_months_org_id_month_start_pk" PRIMARY KEY("org_id","month_start")
);
--> statement-breakpoint
ALTER TABLE "usage_months" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "org_quotas" ADD CONSTRAINT "org_quotas_org_id_orgs_id_fk" FOREIGN KEY ("org_id") REFERENCES "public"."orgs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "run_unit_events" ADD CONSTRAINT "run_unit_events_org_id_orgs_id_fk" FOREIGN KEY ("org_id") REFERENCES "public"."orgs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "usage_hours" ADD CONSTRAINT "usage_hours_org_id_orgs_id_fk" FOREIGN KEY ("org_id") REFERENCES "public"."orgs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "usage_months" ADD CONSTRAINT "usage_months_org_id_orgs_id_fk" FOREIGN KEY ("org_id") REFERENCES "public"."orgs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "run_unit_events_org_occurred_idx" ON "run_unit_events" USING btree ("org_id","occurred_at","id");--> statement-breakpoint
CREATE POLICY "org_quotas_org_wall" ON "org_quotas" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));--> statement-breakpoint
CREATE POLICY "run_unit_events_org_wall" ON "run_unit_events" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));--> statement-breakpoint
CREATE POLICY "usage_hours_org_wall" ON "usage_hours" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));--> statement-breakpoint
CREATE POLICY "usage_months_org_wall" ON "usage_months" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));