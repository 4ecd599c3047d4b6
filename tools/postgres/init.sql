-- Bootstrap of the shared PostgreSQL database, run as the superuser by
-- tools/infra.sh (local stack) and by the postgres container's init (compose).
-- Idempotent. Each service gets a login role and a schema of the same name
-- that it owns; no role can use another's schema or the public schema.
-- The tables themselves are created by each service's embedded migrations.
SET client_min_messages = warning;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON DATABASE sagashop FROM PUBLIC;

DO $$
DECLARE
  svc text;
BEGIN
  FOREACH svc IN ARRAY ARRAY['order_svc', 'payment_svc', 'inventory_svc', 'shipping_svc', 'email_svc'] LOOP
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = svc) THEN
      EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE', svc);
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE sagashop TO %I', svc);
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', svc, svc);
    EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', svc);
    EXECUTE format('ALTER ROLE %I IN DATABASE sagashop SET search_path = %I', svc, svc);
  END LOOP;
END
$$;
