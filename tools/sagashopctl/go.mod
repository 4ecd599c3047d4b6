module sagashop/tools/containers/sagashopctl

go 1.26
