module sagashop/tools/sagashopctl

go 1.26
