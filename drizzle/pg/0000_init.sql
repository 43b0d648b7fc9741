CREATE TABLE "api_keys" (
	"id" text NOT NULL,
	"org_id" text NOT NULL,
	"name" text NOT NULL,
	"prefix" text NOT NULL,
	"hash" text NOT NULL,
	"scopes" jsonb NOT NULL,
	"created_at" text NOT NULL,
	"expires_at" text,
	"revoked_at" text,
	"last_used_at" text,
	"created_by_key_id" text,
	CONSTRAINT "api_keys_org_id_id_pk" PRIMARY KEY("org_id","id"),
	CONSTRAINT "api_keys_id_key" UNIQUE("id"),
	CONSTRAINT "api_keys_hash_key" UNIQUE("hash")
);
--> statement-breakpoint
ALTER TABLE "api_keys" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE TABLE "credentials" (
	"org_id" text NOT NULL,
	"module_id" text NOT NULL,
	"ciphertext" "bytea" NOT NULL,
	"iv" "bytea" NOT NULL,
	"tag" "bytea" NOT NULL,
	"key_id" text NOT NULL,
	"fields" jsonb NOT NULL,
	"created_at" text NOT NULL,
	"updated_at" text NOT NULL,
	CONSTRAINT "credentials_org_id_module_id_pk" PRIMARY KEY("org_id","module_id")
);
--> statement-breakpoint
ALTER TABLE "credentials" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE TABLE "modules" (
	"org_id" text NOT NULL,
	"module_id" text NOT NULL,
	"name" text NOT NULL,
	"version" text NOT NULL,
	"description" text,
	"config" text DEFAULT '{}' NOT NULL,
	"enabled" boolean DEFAULT true NOT NULL,
	"health_status" text DEFAULT 'unknown' NOT NULL,
	"health_message" text,
	"last_health_check" text,
	"usage_count" integer DEFAULT 0 NOT NULL,
	"last_used_at" text,
	"installed_at" text NOT NULL,
	"updated_at" text NOT NULL,
	CONSTRAINT "modules_org_id_module_id_pk" PRIMARY KEY("org_id","module_id")
);
--> statement-breakpoint
ALTER TABLE "modules" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE TABLE "orgs" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"created_at" text NOT NULL
);
--> statement-breakpoint
ALTER TABLE "orgs" ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_org_id_orgs_id_fk" FOREIGN KEY ("org_id") REFERENCES "public"."orgs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "credentials" ADD CONSTRAINT "credentials_org_id_module_id_modules_org_id_module_id_fk" FOREIGN KEY ("org_id","module_id") REFERENCES "public"."modules"("org_id","module_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "modules" ADD CONSTRAINT "modules_org_id_orgs_id_fk" FOREIGN KEY ("org_id") REFERENCES "public"."orgs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "api_keys_org_idx" ON "api_keys" USING btree ("org_id","created_at","id");--> statement-breakpoint
CREATE INDEX "credentials_org_key_idx" ON "credentials" USING btree ("org_id","key_id");--> statement-breakpoint
CREATE INDEX "modules_org_enabled_idx" ON "modules" USING btree ("org_id","enabled","module_id");--> statement-breakpoint
CREATE INDEX "modules_unhealthy_idx" ON "modules" USING btree ("org_id","module_id") WHERE health_status IN ('degraded', 'unhealthy');--> statement-breakpoint
CREATE POLICY "api_keys_org_wall" ON "api_keys" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));--> statement-breakpoint
CREATE POLICY "credentials_org_wall" ON "credentials" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));--> statement-breakpoint
CREATE POLICY "modules_org_wall" ON "modules" AS PERMISSIVE FOR ALL TO public USING (org_id = (select current_setting('app.org_id', true))) WITH CHECK (org_id = (select current_setting('app.org_id', true)));--> statement-breakpoint
CREATE POLICY "orgs_org_wall" ON "orgs" AS PERMISSIVE FOR SELECT TO public USING (id = (select current_setting('app.org_id', true)));