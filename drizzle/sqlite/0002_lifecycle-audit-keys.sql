CREATE TABLE `audit_heads` (
	`org_id` text PRIMARY KEY NOT NULL,
	`seq` integer NOT NULL,
	`hash` text NOT NULL,
	FOREIGN KEY (`org_id`) REFERENCES `orgs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `audit_log` (
	`org_id` text NOT NULL,
	`seq` integer NOT NULL,
	`id` text NOT NULL,
	`at` text NOT NULL,
	`action` text NOT NULL,
	`actor_key_id` text,
	`actor_key_prefix` text,
	`actor_via` text NOT NULL,
	`target_id` text,
	`request_id` text,
	`client_address` text,
	`outcome` text NOT NULL,
	`prev_hash` text NOT NULL,
	`hash` text NOT NULL,
	PRIMARY KEY(`org_id`, `seq`),
	FOREIGN KEY (`org_id`) REFERENCES `orgs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `audit_log_org_at_idx` ON `audit_log` (`org_id`,`at`,`seq`);--> statement-breakpoint
CREATE TABLE `org_keys` (
	`org_id` text PRIMARY KEY NOT NULL,
	`key_id` text NOT NULL,
	`wrapped` blob NOT NULL,
	`iv` blob NOT NULL,
	`tag` blob NOT NULL,
	`master_key_id` text NOT NULL,
	`created_at` text NOT NULL,
	FOREIGN KEY (`org_id`) REFERENCES `orgs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
ALTER TABLE `orgs` ADD `status` text DEFAULT 'active' NOT NULL;--> statement-breakpoint
ALTER TABLE `orgs` ADD `suspended_at` text;--> statement-breakpoint
ALTER TABLE `orgs` ADD `suspend_reason` text;