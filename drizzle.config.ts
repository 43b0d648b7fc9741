import { defineConfig } from 'drizzle-kit';

// Generates reviewed SQL migrations; never use `drizzle-kit push` against user data.
export default defineConfig({
  dialect: 'sqlite',
  schema: './src/store/sqlite/schema.ts',
  out: './drizzle/sqlite',
});
