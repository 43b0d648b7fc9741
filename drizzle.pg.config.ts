import { defineConfig } from 'drizzle-kit';

// PostgreSQL's reviewed SQL migrations; never use `drizzle-kit push` (it has dropped policies).
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/store/postgres/schema.ts',
  out: './drizzle/pg',
});
