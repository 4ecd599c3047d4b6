-- Bootstrap of a Sagashop database, run as the superuser in that database by
-- tools/infra.sh (local stack), by the e2e suite (a database per run) and by
-- the postgres container's init (compose). Idempotent. Each service gets a
-- login role and a schema of the same name that it owns; no role can use
-- another's schema or the public schema. The tables themselves are created by
-- each service's embedded migrations.
SET client_min_messages = warning;
REVOKE ALL ON SCHEMA public FROM PUBLIC;

DO $$
DECLARE
  svc text;
BEGIN
  EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
  FOREACH svc IN ARRAY ARRAY['order_svc', 'payment_svc', 'inventory_svc', 'shipping_svc', 'email_svc'] LOOP
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = svc) THEN
      EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE', svc);
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), svc);
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', svc, svc);
    EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', svc);
    EXECUTE format('ALTER ROLE %I IN DATABASE %I SET search_path = %I', svc, current_database(), svc);
  END LOOP;
END
$$;
