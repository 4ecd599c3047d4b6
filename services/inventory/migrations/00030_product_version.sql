-- +goose Up

-- A product's version: 1 when it is created, one more on every change of
-- its row, whoever makes it (PUT, a restock, a reservation, a release). It
-- is the ETag of GET and PUT /products/{sku}; PUT with If-Match changes a
-- product only if nothing changed it since the client read it. The trigger
-- counts every UPDATE, so no statement can forget to.
ALTER TABLE products ADD COLUMN version bigint NOT NULL DEFAULT 1;

-- +goose StatementBegin
CREATE FUNCTION products_next_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER products_version BEFORE UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION products_next_version();

-- +goose Down
DROP TRIGGER products_version ON products;
DROP FUNCTION products_next_version();
ALTER TABLE products DROP COLUMN version;
