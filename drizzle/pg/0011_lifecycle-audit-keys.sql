CREATE TABLE "audit_heads" (
	"org_id" text PRIMARY KEY NOT NULL,
	"seq" bigint NOT NULL,
	"hash" text NOT NULL
);
--> statement-breakpoint
ALTER TABLE "audit_heads" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE TABLE "audit_log" (
	"org_id" text NOT NULL,
	"seq" bigint NOT NULL,
	"id" text NOT NULL,
	"at" text NOT NULL,
	"action" text NOT NULL,
	"actor_key_id" text,
	"actor_key_prefix" text,
	"actor_via" text NOT NULL,
	"target_id" text,
	"request_id" text,
	"client_address" text,
	"outcome" text NOT NULL,
	"prev_hash" text NOT NULL,
	"hash" text NOT NULL,
	CONSTRAINT "audit_log_org_id_seq_pk" PRIMARY KEY("org_id","seq")
);
--> statement-breakpoint
ALTER TABLE "audit_log" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE TABLE "org_keys" (
	"org_id" text PRIMARY KEY NOT NULL,
	"key_id" text NOT NULL,
	"wrapped" "bytea" NOT NULL,
	"iv" "bytea" NOT NULL,
	"tag" "bytea" NOT NULL,
	"master_key_id" text NOT NULL,
	"created_at" text NOT NULL
);
--> statement-breakpoint
ALTER TABLE "org_keys" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "orgs" ADD COLUMN "status" text DEFAULT 'active' NOT NULL;--> statement-breakpoint
ALTER TABLE "orgs" ADD COLUMN "suspended_at" text;--> statement-breakpoint
ALTER TABLE "orgs" ADD COLUMN "suspend_reason" text;--> statement-breakpoint
ALTER TABLE "audit_heads" ADD CONSTRAINT "audit_heads_org_id_orgs_id_fk" FOREIGN KEY ("org_id") REFERENCES "public"."orgs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "audit_log" ADD CONSTRAINT "audit_log_org_id_orgs_id_fk" FOREIGN KEY ("org_id") REFERENCES "public"."orgs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "org_keys" ADD CONSTRAINT "org_keys_org_id_orgs_id_fk" FOREIGN KEY ("org_id") REFERENCES "public"."orgs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "audit_log_org_at_idx" ON "audit_log" USING btree ("org_id","at","seq");--> statement-breakpoint
CREATE POLICY "audit_heads_org_wall" ON "audit_heads" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));--> statement-breakpoint
CREATE POLICY "audit_log_org_wall" ON "audit_log" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));--> statement-breakpoint
CREATE POLICY "org_keys_org_wall" ON "org_keys" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));