CREATE TABLE `org_quotas` (
	`org_id` text PRIMARY KEY NOT NULL,
	`run_units_per_month` integer,
	`requests_per_minute` integer,
	`burst` integer,
	`updated_at` text NOT NULL,
	FOREIGN KEY (`org_id`) REFERENCES `orgs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `run_unit_events` (
	`org_id` text NOT NULL,
	`id` text NOT NULL,
	`idempotency_key` text NOT NULL,
	`units` integer NOT NULL,
	`module_id` text,
	`occurred_at` text NOT NULL,
	`recorded_at` text NOT NULL,
	`key_id` text,
	PRIMARY KEY(`org_id`, `id`),
	FOREIGN KEY (`org_id`) REFERENCES `orgs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `run_unit_events_org_occurred_idx` ON `run_unit_events` (`org_id`,`occurred_at`,`id`);--> statement-breakpoint
CREATE UNIQUE INDEX `run_unit_events_org_key_unique` ON `run_unit_events` (`org_id`,`idempotency_key`);--> statement-breakpoint
CREATE TABLE `usage_hours` (
	`org_id` text NOT NULL,
	`hour_start` text NOT NULL,
	`run_units` integer DEFAULT 0 NOT NULL,
	`requests` integer DEFAULT 0 NOT NULL,
	PRIMARY KEY(`org_id`, `hour_start`),
	FOREIGN KEY (`org_id`) REFERENCES `orgs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `usage_months` (
	`org_id` text NOT NULL,
	`month_start` text NOT NULL,
	`run_units` integer DEFAULT 0 NOT NULL,
	`requests` integer DEFAULT 0 NOT NULL,
	PRIMARY KEY(`org_id`, `month_start`),
	FOREIGN KEY (`org_id`) REFERENCES `orgs`(`id`) ON UPDATE no action ON DELETE cascade
);
